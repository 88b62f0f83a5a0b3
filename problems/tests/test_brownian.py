"""The counter-based generator: known answers, one definition everywhere, basic statistics."""
import numba
import numpy as np
import pytest

from problems.brownian import box_muller_for, increments, normals, philox4x32_10, uniforms_words

U = np.uint64

# Random123's kat_vectors for philox4x32_10 (counter c0..c3, key k0 k1 -> four words).
KAT = [
    ((0, 0, 0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 6, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344, 0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("args, expected", KAT)
def test_philox_known_answers(args, expected):
    assert tuple(int(x) for x in philox4x32_10(*(U(a) for a in args))) == expected


@pytest.mark.parametrize("args, expected", KAT)
def test_philox_known_answers_numba_and_vectorised(args, expected):
    jitted = numba.njit(philox4x32_10)
    assert tuple(int(x) for x in jitted(*(U(a) for a in args))) == expected
    arrays = [np.full(3, a, dtype=np.uint64) for a in args]
    for word, e in zip(philox4x32_10(*arrays), expected):
        assert (word == e).all()


def test_normals_vectorised_equal_scalar_box_muller():
    bm = box_muller_for(np.float64)
    traj, step = np.arange(5), 7
    z = normals(3, traj, step, n_noise=8)
    for i in range(5):
        for block in range(2):
            w = philox4x32_10(U(step), U(block), U(0), U(0), U(i), U(3))
            a = bm(w[0], w[1]) + bm(w[2], w[3])
            np.testing.assert_allclose(z[i, 4 * block:4 * block + 4], a, rtol=1e-14)


def test_refined_increments_sum_the_fine_ones():
    fine = increments(0, np.arange(4), np.arange(8)[:, None], 3, 0.125)       # (8, 4, 3)
    coarse = increments(0, np.arange(4), np.arange(2)[:, None], 3, 0.5, refine=4)
    np.testing.assert_allclose(coarse, fine.reshape(2, 4, 4, 3).sum(axis=1), rtol=1e-12, atol=1e-15)


def test_uniformity_and_independence_on_a_million_draws():
    n = 250_000  # x 4 words = 10^6 draws
    w = np.stack(uniforms_words(0, np.arange(n) % 1000, np.arange(n) // 1000, 0)).astype(np.float64) / 2.0 ** 32
    flat = w.reshape(-1)
    assert abs(flat.mean() - 0.5) < 5 * np.sqrt(1 / 12 / flat.size)
    counts = np.histogram(flat, bins=100, range=(0, 1))[0]
    chi2 = ((counts - flat.size / 100) ** 2 / (flat.size / 100)).sum()
    assert chi2 < 99 + 5 * np.sqrt(2 * 99)  # chi-square, 99 degrees of freedom, 5 sigma
    bound = 5 / np.sqrt(n)
    for a, b in ((w[0], w[1]), (w[1], w[2]), (w[2], w[3])):   # words of one call
        assert abs(np.corrcoef(a, b)[0, 1]) < bound
    # neighbouring counters (steps) and neighbouring keys (trajectories)
    steps = np.stack(uniforms_words(5, 0, np.arange(n), 0))[0].astype(np.float64)
    assert abs(np.corrcoef(steps[:-1], steps[1:])[0, 1]) < bound
    trajs = np.stack(uniforms_words(5, np.arange(n), 0, 0))[0].astype(np.float64)
    assert abs(np.corrcoef(trajs[:-1], trajs[1:])[0, 1]) < bound


def test_normals_have_standard_moments():
    z = normals(1, np.arange(250_000), 0, n_noise=4).reshape(-1)  # 10^6 normals
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs((z ** 4).mean() - 3) < 5 * np.sqrt(96 / n)
    assert np.isfinite(z).all()


def test_seeds_give_different_streams():
    a, b = normals(0, np.arange(1000), 0, 3), normals(1, np.arange(1000), 0, 3)
    assert abs(np.corrcoef(a.reshape(-1), b.reshape(-1))[0, 1]) < 5 / np.sqrt(3000)
