import numpy as np
import pytest
import torch

from Testing.simulators.speckle import SpeckleCase, simulate
from nsn2n.refine.guard import residual_guard
from nsn2n.filters import gaussian_lowpass
from nsn2n.methods.speckle2self.restore import (GRAIN_RANGE, fit_guide, half_max_width, restore,
                                   speckle_band_std, speckle_grain, speckle_variance, tissue)


def test_half_max_width_interpolates_and_saturates():
    assert half_max_width(np.array([1.0, 0.75, 0.25, 0.0])) == pytest.approx(1.5)
    assert half_max_width(np.array([1.0, 0.5, 0.4])) == pytest.approx(1.0)
    assert half_max_width(np.array([1.0, 0.9, 0.8])) == 3.0


@pytest.mark.parametrize("axial, lateral", [(1.0, 2.5), (1.5, 4.0), (3.0, 1.2)])
def test_grain_follows_the_larger_psf_width(axial, lateral):
    noisy = simulate(SpeckleCase("grain", shape=(4, 128, 128), axial_sigma=axial,
                                 lateral_sigma=lateral, seed=5))["noisy"]
    assert speckle_grain(noisy) == pytest.approx(max(axial, lateral), rel=0.2)


def test_grain_of_constant_frames_is_the_floor():
    assert speckle_grain(np.ones((2, 32, 32))) == GRAIN_RANGE[0]
    with pytest.raises(ValueError):
        speckle_grain(np.ones((32, 32)))


def test_the_guide_is_fitted_to_each_frame_by_gain_and_offset():
    rng = np.random.default_rng(0)
    frames = rng.random((3, 20, 30))
    denoised = np.stack([2.0 * frames[0] + 5, -0.5 * frames[1], np.full((20, 30), 4.0)])
    guide = fit_guide(frames, denoised)
    assert np.allclose(guide[:2], frames[:2], atol=1e-5)
    assert np.allclose(guide[2], frames[2].mean())  # a flat output: the frame's mean
    with pytest.raises(ValueError):
        fit_guide(frames, denoised[:, :, :4])


def test_speckle_variance_is_robust_and_ignores_black_outside_the_sector():
    rng = np.random.default_rng(1)
    guide = np.full((2, 100, 100), 0.5)
    frames = guide + 0.1 * rng.standard_normal(guide.shape)
    frames[:, 40:42, :] += 3.0  # an edge the guide misses: a minority of pixels
    assert speckle_variance(frames, guide) == pytest.approx(0.01, rel=0.1)
    frames[:, :, :60] = frames.min() - 1  # a black background, 60 % of the image
    guide[:, :, :60] = frames.min()
    assert speckle_variance(frames, guide) == pytest.approx(0.01, rel=0.1)


def test_guided_average_removes_speckle_but_keeps_the_edges_of_the_guide():
    data = simulate(SpeckleCase("refine", shape=(2, 96, 96), seed=3))
    noisy, clean = data["noisy"].astype(np.float64), data["clean"].astype(np.float64)
    refined, info = restore(noisy, clean, guard_factor=0)  # a perfect guide
    assert info["search_radius_px"] > 5 and info["speckle_variance"] > 0
    error_before = np.abs(noisy - clean - np.mean(noisy - clean)).mean()
    error_after = np.abs(refined - clean - np.mean(refined - clean)).mean()
    assert error_after < 0.4 * error_before
    blurred = gaussian_lowpass(torch.from_numpy(noisy), 6.0).numpy()
    assert error_after < 0.8 * np.abs(blurred - clean - np.mean(blurred - clean)).mean()


def test_search_grains_zero_and_guard_zero_return_the_network_output():
    noisy = grainy()
    denoised = gaussian_lowpass(torch.from_numpy(noisy), 3.0).numpy().astype(np.float64)
    out, info = restore(noisy, denoised, search_grains=0, guard_factor=0)
    assert np.array_equal(out, denoised) and info["search_radius_px"] == 0


def grainy(frames=3, size=64, std=0.1, seed=0):
    """Spatially correlated noise (a speckle stand-in) around 0.5."""
    rng = np.random.default_rng(seed)
    white = torch.from_numpy(rng.standard_normal((frames, size, size)).astype(np.float32))
    noise = gaussian_lowpass(white, 1.5).numpy().astype(np.float64)
    return 0.5 + std * noise / noise.std()


def test_band_std_scales_with_the_speckle_and_is_zero_without():
    base = grainy()
    one = speckle_band_std(base, (1.5, 4.5))
    two = speckle_band_std(0.5 + 2 * (base - 0.5), (1.5, 4.5))
    assert len(one) == 3 and one[0] > 0
    # The detail bands scale with the speckle; the last one also holds the mean.
    assert two[:2] == pytest.approx([2 * v for v in one[:2]], rel=1e-4)
    flat = speckle_band_std(np.full((2, 32, 32), 0.7), (1.0, 3.0))
    assert flat[:2] == pytest.approx([0, 0], abs=1e-5)


def test_restore_gives_back_a_thin_line_but_not_the_speckle():
    noisy = grainy()
    noisy[:, 30:32, 16:48] += 1.0  # a bright reflector, far above the speckle
    smoothed = gaussian_lowpass(torch.from_numpy(noisy), 6.0).numpy().astype(np.float64)
    restored, info = restore(noisy, smoothed)
    assert info["guard_returned"] > 0 and info["speckle_grain_px"] > 0
    line = np.s_[:, 30:32, 20:44]
    assert np.abs(restored[line] - noisy[line]).mean() < 0.25 * np.abs(smoothed[line]
                                                                       - noisy[line]).mean()
    flat = np.s_[:, 44:60, 8:-8]
    assert restored[flat].std() < 0.6 * noisy[flat].std()
    alone, off = restore(noisy, smoothed, guard_factor=0)
    assert off["guard_returned"] == 0
    assert np.abs(alone[line] - noisy[line]).mean() > np.abs(restored[line] - noisy[line]).mean()


def test_guard_checks_the_number_of_band_levels():
    stack = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(ValueError):
        residual_guard(stack, stack, scales=(1.0, 3.0), noise_std=[0.1, 0.1])


def test_tissue_is_above_a_tenth_of_the_display_range_of_each_frame():
    frames = np.zeros((2, 4, 10))
    frames[:, :, 9] = 10.0  # each frame spans 0..10
    guide = np.tile(np.arange(10.0), (2, 4, 1))
    assert tissue(frames, guide)[0, 0].tolist() == [False, False] + [True] * 8


def test_a_black_background_does_not_hide_the_speckle_from_the_guard():
    # The real SonoSite cine: a sector of speckle on a black frame.  Measured over every
    # pixel, the speckle level read near zero and the guard gave back almost everything.
    noisy = grainy(frames=2, size=96, std=0.1)
    noisy[:, :, :56] = 0.0
    smooth = np.where(noisy > 0, 0.5, 0.0)
    out, info = restore(noisy, smooth, search_grains=0)
    assert info["guard_returned"] < 0.2
    assert out[:, 10:-10, 66:-10].std() < 0.5 * noisy[:, 10:-10, 66:-10].std()
    levels = speckle_band_std(noisy, (1.5, 4.5), where=noisy > 0)
    assert levels[0] > 2 * speckle_band_std(noisy, (1.5, 4.5))[0]
