import numpy as np
import pytest
import torch

from nsn2n.filters import gaussian_lowpass, split_bands
from nsn2n.noise import estimate_noise, rician_background_sigma, robust_std, tissue_mask
from nsn2n.refine.guard import BAND_SCALES
from Testing.helpers import changing_anatomy, white_noise
from Testing.simulators.volumes import add_rician, shared_across_slices


def test_white_noise_sigma_spectrum_and_bands():
    noise = white_noise(0.1, (24, 96, 96))
    estimate = estimate_noise(noise + 0.5, BAND_SCALES)
    assert estimate.sigma == pytest.approx(0.1, rel=0.05)
    # flat: each coefficient is a median over the flattest few hundred tiles
    assert torch.allclose(estimate.spectrum, torch.full((8, 8), 0.01), rtol=0.35)
    expected = [float(b.std()) for b in split_bands(torch.from_numpy(noise), BAND_SCALES)]
    assert estimate.bands == pytest.approx(expected, rel=0.1)
    variance = estimate.coefficient_variance(8)
    assert variance.shape == (8, 8, 8) and torch.equal(variance[0], variance[-1])


def test_in_plane_correlated_noise_keeps_its_spectrum_and_marginal_sigma():
    # Noise correlated within each slice as in the real scans (lag-1 correlation 0.26;
    # measured 0.2-0.4 in-plane on real MRI, 0.36 on the CT phantom), independent across.
    noise = gaussian_lowpass(torch.from_numpy(white_noise(1.0, (24, 96, 96))), 0.5).numpy()
    estimate = estimate_noise(noise + 5.0, BAND_SCALES)
    assert estimate.sigma == pytest.approx(float(noise.std()), rel=0.1)
    assert float(estimate.spectrum[0, 0]) > 3 * float(estimate.spectrum[-1, -1])


@pytest.mark.parametrize("kernel, low, high", [(0.25, 0.55, 0.72), (0.5, 0.3, 0.5)])
def test_noise_shared_by_neighbouring_slices_is_recognised(kernel, low, high):
    # Correlations 0.44 and 0.67 between neighbouring slices (through-plane resampling):
    # second differences across slices then carry (6 - 8 rho_1 + 2 rho_2) / 6 of the
    # variance, 0.42 and 0.16, so the ratio is about 0.65 and 0.4 (x 0.95, the flat
    # voxels' own bias measured on independent noise below).
    noise = shared_across_slices(white_noise(0.1, (26, 96, 96)), kernel)
    estimate = estimate_noise(noise + 0.5, BAND_SCALES)
    assert low < estimate.across_to_inplane < high
    assert estimate.correlated_across_slices()
    assert estimate.inplane_sigma == pytest.approx(0.1, rel=0.1)


def test_independent_noise_is_not_taken_as_shared_across_slices():
    white = estimate_noise(white_noise(0.1, (24, 96, 96)) + 0.5, BAND_SCALES)
    assert white.across_to_inplane == pytest.approx(0.95, abs=0.08)
    assert not white.correlated_across_slices()
    # CT-like noise, correlated within the slices: its in-plane differences read low, so
    # the ratio rises (1.12-1.15 on the CT benchmark cases).
    ct_like = gaussian_lowpass(torch.from_numpy(white_noise(1.0, (24, 96, 96))), 0.7).numpy()
    estimate = estimate_noise(ct_like + 5.0, BAND_SCALES)
    assert estimate.across_to_inplane > 1.0 and not estimate.correlated_across_slices()
    # Thick slices (anatomy that changes between slices) are not taken for it either.
    _, noisy = changing_anatomy(sigma=0.01)
    assert not estimate_noise(noisy, BAND_SCALES).correlated_across_slices()


def test_zero_filled_background_and_identical_slices():
    noise = white_noise(0.1, (24, 96, 96)) + 1.0
    expected = estimate_noise(noise, BAND_SCALES).sigma
    noise[:, :, :40] = 0.0  # a masked background or the outside of a CT's field of view
    assert estimate_noise(noise, BAND_SCALES).sigma == pytest.approx(expected, rel=0.1)
    same = np.repeat(white_noise(0.1, (1, 32, 32)), 4, axis=0)
    assert estimate_noise(same, BAND_SCALES).sigma == 0.0


@pytest.mark.parametrize("sigma", [0.005, 0.01])
def test_anatomy_that_changes_between_slices_is_not_read_as_noise(sigma):
    # Thick slices: every slice has its own layout of tissue, 30-180 sigma of contrast.
    # The median of all second differences across slices (the estimate before
    # estimate_noise) read 1.6x / 1.5x the noise here (the Wiener stage's per-coefficient
    # estimate; measured 2026-12-04), 2.5-10x on real 2-6 mm MRI.
    _, noisy = changing_anatomy(sigma=sigma)
    assert estimate_noise(noisy, BAND_SCALES).sigma == pytest.approx(sigma, rel=0.15)


def test_rician_magnitude_at_low_snr():
    clean = np.zeros((16, 96, 96))
    clean[:, 20:76, 20:76] = 0.15  # SNR 3 in tissue
    noisy = add_rician(clean, 0.05, seed=0)
    estimate = estimate_noise(noisy, BAND_SCALES, magnitude=True)
    tissue_noise = float(noisy[:, 24:72, 24:72].std())
    assert estimate.sigma == pytest.approx(tissue_noise, rel=0.2)


def test_air_bounds_a_magnitude_image_whose_anatomy_hides_the_noise():
    # So dense and fast-changing that the slices alone overestimate the noise.
    _, noisy = changing_anatomy(sigma=0.005, blobs=40)
    magnitude = np.abs(noisy + np.random.default_rng(1).normal(0, 0.005, noisy.shape) * 1j)
    alone = estimate_noise(magnitude, BAND_SCALES)
    capped = estimate_noise(magnitude, BAND_SCALES, magnitude=True)
    assert alone.sigma > 1.5 * 0.005 and alone.air_sigma is None
    assert capped.air_sigma == pytest.approx(0.005, rel=0.2)
    assert capped.sigma == pytest.approx(0.005, rel=0.2)
    masked = np.where(magnitude < 0.1, 0.0, magnitude)  # the scanner zeroed the background
    assert estimate_noise(masked, BAND_SCALES, magnitude=True).air_sigma is None


def test_tissue_mask_leaves_out_air():
    clean, noisy = changing_anatomy(sigma=0.01)
    mask = tissue_mask(torch.from_numpy(noisy)).numpy()
    assert mask[:, 48, 48].all() and not mask[:, 0, 0].any()


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_rician_background_sigma(sigma):
    clean = np.zeros((10, 64, 64))
    clean[:, 16:48, 16:48] = 0.8  # an object in air
    noisy = add_rician(clean, sigma, seed=0)
    assert rician_background_sigma(noisy) == pytest.approx(sigma, rel=0.15)


def test_no_background_gives_none():
    rng = np.random.default_rng(0)
    assert rician_background_sigma(rng.uniform(0.5, 1.0, (10, 32, 32))) is None


def test_robust_std_reads_gaussian_noise_and_ignores_a_minority_of_outliers():
    noise = torch.from_numpy(white_noise(2.0, (200_000,)))
    assert robust_std(noise) == pytest.approx(2.0, rel=0.02)
    noise[:20_000] = 1e6  # 10 % outliers (edges, anatomy) barely move it
    assert robust_std(noise) < 2.6
    shifted = torch.from_numpy(white_noise(2.0, (200_000,))) + 50.0
    assert robust_std(shifted, centre=True) == pytest.approx(2.0, rel=0.02)
    columns = torch.from_numpy(white_noise(1.0, (50_000, 3))) * torch.tensor([1.0, 2.0, 4.0])
    assert robust_std(columns, dim=0).tolist() == pytest.approx([1.0, 2.0, 4.0], rel=0.03)
    assert robust_std(torch.zeros(0)) == 0.0
