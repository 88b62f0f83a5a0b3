"""The environment fingerprint: what it records, and the run-id tag."""
from __future__ import annotations

from harness.measure import environment
from harness.measure.environment import device_tag, fingerprint


def test_fingerprint_records_machine_software_and_settings(monkeypatch):
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    monkeypatch.setenv("EQX_ON_ERROR", "nan")
    monkeypatch.setenv("OMP_PROC_BIND", "true")
    monkeypatch.setenv("VECLIB_MAXIMUM_THREADS", "1")
    monkeypatch.setenv("BLIS_NUM_THREADS", "1")
    fp = fingerprint([1, 2])
    assert fp["cpu"]["logical_cores"] >= 1 and isinstance(fp["cpu"]["flags"], list)
    # the fused CPU kernels' ISA and this core's measured FMA peak (or the reason it failed)
    vec = fp["cpu_vector"]
    assert vec["isa"] in ("avx512", "avx2", "avx", "sse") and vec["fma_peak_f32_per_ns"] > 0, vec
    assert fp["python"]["version"].count(".") == 2
    assert fp["libraries"]["numpy"] and "torch" in fp["libraries"] and "cupy-cuda13x" in fp["libraries"]
    env = fp["environment_variables"]
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false" and env["NUMBA_NUM_THREADS"] == "2"
    assert "UNRELATED_VARIABLE" not in env and "VECLIB_MAXIMUM_THREADS" not in env
    assert env["EQX_ON_ERROR"] == "nan" and env["OMP_PROC_BIND"] == "true" and env["BLIS_NUM_THREADS"] == "1"
    assert fp["threads"]["setting"] == [1, 2]
    assert fp["threads"]["worker_environment"]["2"]["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=2")
    assert set(fp["git"]) == {"commit", "dirty", "dirty_paths"}
    assert fp["git"]["dirty"] == bool(fp["git"]["dirty_paths"])
    assert set(fp["gpu"]) >= {"source", "gpus", "driver", "cuda"}


def test_gpu_info_reads_nvidia_smi(monkeypatch):
    outputs = {
        "--query-gpu=name,driver_version,memory.total,compute_cap,uuid":
            "NVIDIA H100 80GB HBM3, 550.54.15, 81559 MiB, 9.0, GPU-1234\n",
        None: "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |\n",
    }
    monkeypatch.setattr(environment, "_run", lambda cmd, timeout=20.0: outputs[cmd[1] if len(cmd) > 1 else None])
    info = environment.gpu_info()
    assert info["gpus"] == [{"name": "NVIDIA H100 80GB HBM3", "memory": "81559 MiB", "compute_cap": "9.0",
                             "uuid": "GPU-1234"}]
    assert info["driver"] == "550.54.15" and info["cuda"] == "12.4"


def test_device_tag_names_the_gpu_or_the_host():
    def fp(gpu: str | None, host: str = "Box-7.example.org") -> dict:
        return {"hostname": host, "gpu": {"gpus": [{"name": gpu}] if gpu else []}}

    assert device_tag(fp("NVIDIA H100 80GB HBM3"), "gpu") == "h100"
    assert device_tag(fp("Tesla V100-PCIE-32GB"), "gpu") == "v100"
    assert device_tag(fp("NVIDIA H100 80GB HBM3"), "cpu") == "box-7"
    assert device_tag(fp(None), "gpu") == "box-7"
