import threading

import numpy as np
import pytest
import torch

from nsn2n.errors import Cancelled
from nsn2n.refine.nonlocal_means import guided_nonlocal_means


def step_phantom(shape=(8, 24, 24)):
    clean = np.zeros(shape, np.float32)
    clean[:, :, shape[2] // 2:] = 1.0
    return clean


def test_no_noise_gives_the_input_back():
    noisy = np.random.default_rng(0).normal(size=(4, 12, 12)).astype(np.float32)
    out = guided_nonlocal_means(noisy, np.zeros_like(noisy), noise_variance=0.0)
    assert out is not noisy and np.array_equal(out, noisy)


def test_a_flat_guide_averages_the_whole_search_window():
    noisy = np.random.default_rng(1).normal(size=(9, 15, 15)).astype(np.float32)
    out = guided_nonlocal_means(noisy, np.ones_like(noisy), noise_variance=1.0,
                                search=(1, 2, 2), patch=(1, 3, 3))
    assert out[4, 7, 7] == pytest.approx(noisy[3:6, 5:10, 5:10].mean(), abs=1e-5)


def test_averages_noise_away_without_crossing_an_edge_of_the_guide():
    clean = step_phantom()
    noise = np.random.default_rng(2).normal(0, 0.1, clean.shape).astype(np.float32)
    out = guided_nonlocal_means(clean + noise, clean, noise_variance=0.01)
    error = out - clean
    assert np.sqrt((error ** 2).mean()) < 0.3 * np.sqrt((noise ** 2).mean())
    # Columns on each side of the edge keep their level: nothing leaks across it.
    edge = clean.shape[2] // 2
    assert abs(error[:, :, edge - 1].mean()) < 0.02 and abs(error[:, :, edge].mean()) < 0.02


def test_chunks_do_not_change_the_result():
    clean = step_phantom((7, 16, 16))
    noisy = clean + np.random.default_rng(3).normal(0, 0.2, clean.shape).astype(np.float32)
    guide = clean + 0.05
    np.testing.assert_allclose(guided_nonlocal_means(noisy, guide, 0.04, chunk=2),
                               guided_nonlocal_means(noisy, guide, 0.04, chunk=8), atol=1e-6)


def test_a_strided_search_weighs_offsets_by_tents_that_tile_the_window():
    noisy = np.random.default_rng(6).normal(size=(1, 40, 40)).astype(np.float32)
    strided = guided_nonlocal_means(noisy, np.ones_like(noisy), 1.0, search=(0, 6, 6),
                                    patch=(1, 3, 3), stride=(1, 3, 3))
    # A flat guide weighs the 5 x 5 offsets alike; each stands for a tent of half-width
    # 3 around it, so the kernel is their sum: flat over -6..6 with tails out to 8.
    tent = np.array([1, 2, 3, 2, 1]) / 9
    kernel = np.zeros(17)
    for offset in (-6, -3, 0, 3, 6):
        kernel[8 + offset - 2:8 + offset + 3] += tent / 5
    assert kernel.sum() == pytest.approx(1) and np.allclose(kernel[2:15], 1 / 15)
    expected = kernel @ noisy[0, 12:29, 12:29] @ kernel
    assert strided[0, 20, 20] == pytest.approx(float(expected), abs=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(stride=(1, 0, 1)), "stride"),
    (dict(guide=np.zeros((3, 8, 9), np.float32)), "shapes differ"),
    (dict(strength=-1.0), ">= 0"),
    (dict(patch=(3, 4, 5)), "odd"),
])
def test_bad_arguments_raise(kwargs, message):
    noisy = np.zeros((3, 8, 8), np.float32)
    arguments = dict(noisy=noisy, guide=noisy, noise_variance=1.0)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        guided_nonlocal_means(**arguments)


def test_progress_ends_complete_and_cancel_stops():
    noisy = np.random.default_rng(4).normal(size=(6, 10, 10)).astype(np.float32)
    seen = []
    guided_nonlocal_means(noisy, noisy, 1.0, chunk=2, progress=seen.append)
    assert [p.phase for p in seen] == ["refine"] * 4
    assert seen[-1].step == seen[-1].total == 3
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        guided_nonlocal_means(noisy, noisy, 1.0, cancel=cancel)
