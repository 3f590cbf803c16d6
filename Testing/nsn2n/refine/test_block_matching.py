import threading

import numpy as np
import pytest
import torch

from nsn2n.errors import Cancelled
from nsn2n.refine import block_matching
from nsn2n.refine.block_matching import ProbeNoise, block_matching_wiener
from Testing.helpers import smooth_phantom, white_noise


def white_lags(variance=1.0, radius=5):
    lags = torch.zeros((2 * radius + 1,) * 2)
    lags[radius, radius] = variance
    return lags


def correlated_lags(neighbour=0.2, radius=5):
    lags = white_lags(1.0, radius)
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        lags[radius + dy, radius + dx] = neighbour
    return lags


def phantom_case(shape=(10, 31, 28), sigma=0.1, seed=0):
    clean = smooth_phantom(shape)
    noisy = clean + white_noise(sigma, shape, seed)
    return clean, noisy.astype(np.float32)


def test_a_pilot_far_above_the_noise_keeps_the_input_and_a_flat_zero_pilot_removes_it():
    _, noisy = phantom_case()
    kept, _ = block_matching_wiener(noisy, noisy * 1e4, 1e-2)
    np.testing.assert_allclose(kept, noisy, atol=1e-4)
    zero, _ = block_matching_wiener(noisy, np.zeros_like(noisy), 1e-2)
    np.testing.assert_allclose(zero, 0.0, atol=1e-6)


def test_matching_similar_cubes_beats_filtering_each_cube_alone(monkeypatch):
    """Stripes repeating every 4 px: every cube has exact twins within the search, so a
    group of 16 averages 16 times the noise of one cube; a group of one cannot."""
    shape = (8, 32, 32)
    clean = np.broadcast_to(np.tile([0.0, 0.0, 1.0, 1.0], 8), shape).astype(np.float32)
    noisy = (clean + white_noise(0.3, shape, 1)).astype(np.float32)
    grouped, _ = block_matching_wiener(noisy, clean, 0.09)
    monkeypatch.setattr(block_matching, "GROUP", 1)
    alone, _ = block_matching_wiener(noisy, clean, 0.09)
    error = lambda out: float(np.mean((out - clean) ** 2))  # noqa: E731
    assert error(grouped) < 0.5 * error(alone)
    assert error(alone) < 0.09  # both denoise


def test_output_does_not_depend_on_how_the_stack_is_cut_into_slabs(monkeypatch):
    clean, noisy = phantom_case((14, 23, 20))
    pilot = clean.astype(np.float32)
    whole, kept = block_matching_wiener(noisy, pilot, 0.01, probe=ProbeNoise(
        white_lags(0.01), 23, 20, seed=3))
    monkeypatch.setattr(block_matching, "SLAB_REFERENCES", 1)  # one plane of references
    monkeypatch.setattr(block_matching, "CHUNK_REFERENCES", 7)
    cut, kept_cut = block_matching_wiener(noisy, pilot, 0.01, probe=ProbeNoise(
        white_lags(0.01), 23, 20, seed=3))
    np.testing.assert_allclose(cut, whole, atol=1e-5)
    assert kept_cut == pytest.approx(kept, rel=1e-4)
    assert np.isfinite(whole).all()


def exact_kept_noise(noisy, pilot, variance, lags):
    """tr(J C) from the stage's Jacobian, one unit impulse at a time (tiny stacks)."""
    shape = noisy.shape
    columns = []
    for index in range(noisy.size):
        impulse = np.zeros(noisy.size, np.float32)
        impulse[index] = 1.0
        columns.append(block_matching_wiener(impulse.reshape(shape), pilot, variance)[0].ravel())
    jacobian = np.stack(columns, axis=1).astype(np.float64)
    radius = lags.shape[0] // 2
    z, y, x = np.indices(shape).reshape(3, -1)
    dy, dx = y[None, :] - y[:, None], x[None, :] - x[:, None]
    near = (z[None, :] == z[:, None]) & (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    covariance = np.where(near, lags.numpy()[np.clip(dy + radius, 0, 2 * radius),
                                              np.clip(dx + radius, 0, 2 * radius)], 0.0)
    return float(np.trace(jacobian @ covariance))


@pytest.mark.parametrize("lags", [white_lags(), correlated_lags()], ids=["white", "in-plane"])
def test_kept_noise_from_probes_is_the_trace_of_the_stage_times_the_noise_covariance(lags):
    """Matched cubes overlap, so a voxel's noise reaches its output through several slots;
    the probe estimate must still be unbiased: its mean over seeds within 4 standard
    errors of the exact tr(J C)."""
    shape = (5, 9, 10)
    clean = np.cumsum(np.random.default_rng(0).normal(size=shape), axis=2).astype(np.float32)
    noisy = clean + white_noise(1.0, shape, 1)
    exact = exact_kept_noise(noisy, clean, 1.0, lags)
    estimates = [block_matching_wiener(noisy, clean, 1.0,
                                       probe=ProbeNoise(lags, 9, 10, seed))[1]
                 for seed in range(30)]
    assert 0.05 * noisy.size < exact < noisy.size  # the stage keeps some, not all, noise
    assert np.mean(estimates) == pytest.approx(exact, abs=4 * np.std(estimates) / np.sqrt(30))


def test_probe_noise_has_the_covariance_it_is_given_and_each_slice_its_own_seed():
    lags = correlated_lags(0.2)
    probe = ProbeNoise(lags, 64, 48, seed=7)
    slices = probe.slices(range(40)).double()
    assert slices.shape == (40, 64, 48)
    assert float(slices.var()) == pytest.approx(1.0, abs=0.03)
    right = float((slices[:, :, 1:] * slices[:, :, :-1]).mean())
    down = float((slices[:, 1:] * slices[:, :-1]).mean())
    diagonal = float((slices[:, 1:, 1:] * slices[:, :-1, :-1]).mean())
    assert right == pytest.approx(0.2, abs=0.02) and down == pytest.approx(0.2, abs=0.02)
    assert diagonal == pytest.approx(0.0, abs=0.02)
    across = float((slices[1:] * slices[:-1]).mean())
    assert across == pytest.approx(0.0, abs=0.02)  # independent slices
    # Slice 5 is the same whichever slices are asked for with it.
    torch.testing.assert_close(probe.slices([5, 9])[0], probe.slices([5])[0])
    assert not torch.equal(ProbeNoise(lags, 64, 48, seed=8).slices([5]), probe.slices([5]))


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 16, 16), (3, 40, 4)])
def test_stacks_smaller_than_a_cube_or_the_search_are_filtered_without_gaps(shape):
    noisy = white_noise(1.0, shape, 0).astype(np.float32)
    out, kept = block_matching_wiener(noisy, np.zeros_like(noisy) + 0.5, 1.0,
                                      probe=ProbeNoise(white_lags(), *shape[1:], 0))
    assert out.shape == shape and np.isfinite(out).all() and np.isfinite(kept)


def test_bad_inputs_are_refused_and_cancel_stops_it():
    _, noisy = phantom_case((6, 12, 12))
    with pytest.raises(ValueError, match="shapes differ"):
        block_matching_wiener(noisy, noisy[:5], 1.0)
    with pytest.raises(ValueError, match="stride"):
        block_matching_wiener(noisy, noisy, 1.0, stride=0)
    with pytest.raises(ValueError, match="probe"):
        block_matching_wiener(noisy, noisy, 1.0, probe=ProbeNoise(white_lags(), 12, 13, 0))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        block_matching_wiener(noisy, noisy, 1.0, cancel=cancel)


def test_progress_is_reported_up_to_the_whole_stack(monkeypatch):
    monkeypatch.setattr(block_matching, "SLAB_REFERENCES", 1)
    _, noisy = phantom_case((12, 16, 16))
    seen = []
    block_matching_wiener(noisy, noisy, 1.0, progress=seen.append)
    assert all(p.phase == "refine" for p in seen)
    assert seen[-1].step == seen[-1].total == 4 and len(seen) == 5  # a slab per plane of 4
