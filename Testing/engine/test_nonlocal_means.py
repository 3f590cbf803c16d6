import threading

import numpy as np
import pytest
import torch

from nsn2n.errors import Cancelled
from nsn2n.nonlocal_means import box_sum, guided_nonlocal_means


def test_box_sum_equals_the_brute_force_sum():
    values = torch.rand(5, 7, 9, generator=torch.Generator().manual_seed(0))
    summed = box_sum(values, (3, 5, 3))
    assert summed.shape == (3, 3, 7)
    assert float(summed[1, 2, 4]) == pytest.approx(float(values[1:4, 2:7, 4:7].sum()), rel=1e-6)


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


@pytest.mark.parametrize("kwargs,message", [
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
