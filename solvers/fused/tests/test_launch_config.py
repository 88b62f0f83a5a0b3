"""CUDA launch safety without a GPU: the block size is clamped to the compiled kernel's limit."""
import pytest

from solvers.fused.backend import launch_config


def test_requested_block_size_fits():
    assert launch_config(1000, 256, 1024) == (4, 256)


def test_block_size_clamped_to_the_kernels_register_limit():
    # e.g. 96 registers per thread on a 64K-register SM: at most 640 threads per block
    assert launch_config(10_000, 1024, 640) == (16, 640)
    assert launch_config(10_000, 1024, 600) == (18, 576)  # whole warps
    assert launch_config(5, 256, 16) == (1, 16)


def test_one_block_for_a_tiny_ensemble():
    assert launch_config(8, 256, 1024) == (1, 256)


def test_no_launch_for_an_empty_ensemble():
    with pytest.raises(ValueError):
        launch_config(0, 256, 1024)
