import numpy as np
import pytest
import torch

from nsn2n.filters import dct_basis
from nsn2n.refine.combine import KeptNoise, in_plane_autocovariance, mix, sure_weights
from nsn2n.refine.nonlocal_means import guided_nonlocal_means
from nsn2n.refine.wiener import empirical_wiener
from Testing.helpers import smooth_phantom, white_noise


def correlated_noise(shape, sigma, seed):
    """Noise smoothed in-plane by a [1 2 1]/4 kernel, independent across slices (CT-like)."""
    white = torch.from_numpy(white_noise(1.0, shape, seed))
    kernel = torch.tensor([0.25, 0.5, 0.25])
    smooth = torch.nn.functional.conv2d(white[:, None], (kernel[:, None] * kernel)[None, None],
                                        padding=1)[:, 0]
    return (smooth * sigma / smooth[:, 2:-2, 2:-2].std()).numpy()


def dct_spectrum(noise, size=8):
    """The per-coefficient variance of ``noise``'s in-plane ``size`` x ``size`` DCT."""
    d, h, w = noise.shape
    tiles = torch.from_numpy(noise[:, :h // size * size, :w // size * size]).reshape(
        d, h // size, size, w // size, size).permute(0, 1, 3, 2, 4).reshape(-1, size, size)
    basis = dct_basis(size)
    return torch.einsum("ay,bx,nyx->nab", basis, basis, tiles).var(0)


def test_white_spectrum_has_no_covariance_at_other_lags():
    lags = in_plane_autocovariance(torch.full((8, 8), 2.0), 3)
    assert lags.shape == (7, 7)
    assert float(lags[3, 3]) == pytest.approx(2.0)
    lags[3, 3] = 0.0
    assert float(lags.abs().max()) < 1e-6


def test_autocovariance_of_correlated_noise_matches_the_noise():
    noise = correlated_noise((40, 64, 64), 1.0, seed=0)
    lags = in_plane_autocovariance(dct_spectrum(noise), 2)
    inner = noise[:, 4:-4, 4:-4]
    for dy, dx in [(0, 1), (1, 0), (1, 1), (0, 2)]:
        shifted = noise[:, 4 + dy:noise.shape[1] - 4 + dy, 4 + dx:noise.shape[2] - 4 + dx]
        measured = float(np.mean(inner * shifted))
        # The 8x8 DCT only nearly decorrelates such noise: 10-17 % low at lag 1.
        assert float(lags[2 + dy, 2 + dx]) == pytest.approx(measured, rel=0.2)
    assert float(lags[2, 3]) > 0.4  # clearly correlated: [1 2 1] smoothing gives 2/3


def kept_noise_measured(stage, noise, lags):
    """The stage's kept noise per voxel (KeptNoise) and as measured: mean of f_i n_i over
    the voxels, for a stage linear in the noisy data (guide / pilot fixed)."""
    clean = smooth_phantom(noise.shape)
    kept = KeptNoise(lags)
    output = stage(clean + noise, clean, kept)
    without_noise = stage(clean, clean, None)
    measured = float(np.mean((output - without_noise) * noise))
    return kept.total / noise.size, measured


@pytest.mark.parametrize("correlated", [False, True])
def test_kept_noise_of_the_non_local_means_is_the_covariance_it_keeps(correlated):
    shape, sigma = (10, 40, 40), 0.1
    noise = correlated_noise(shape, sigma, 1) if correlated else white_noise(sigma, shape, 1)
    lags = in_plane_autocovariance(dct_spectrum(noise), 5)

    def stage(noisy, guide, kept):
        return guided_nonlocal_means(noisy, guide, sigma ** 2, 0.2, kept_noise=kept)

    predicted, measured = kept_noise_measured(stage, noise, lags)
    assert predicted == pytest.approx(measured, rel=0.15)
    assert 0 < predicted < sigma ** 2


@pytest.mark.parametrize("correlated", [False, True])
def test_kept_noise_of_the_wiener_stage_is_the_covariance_it_keeps(correlated):
    shape, sigma = (10, 40, 40), 0.1
    noise = correlated_noise(shape, sigma, 2) if correlated else white_noise(sigma, shape, 2)
    spectrum = dct_spectrum(noise)
    variance = spectrum.expand(8, 8, 8).contiguous()

    def stage(noisy, pilot, kept):
        return empirical_wiener(noisy, pilot, variance, kept_noise=kept)

    predicted, measured = kept_noise_measured(stage, noise,
                                              in_plane_autocovariance(spectrum, 5))
    assert predicted == pytest.approx(measured, rel=0.15)
    assert 0 < predicted < sigma ** 2


def test_kept_noise_of_the_identity_is_all_of_it():
    noisy = white_noise(1.0, (4, 12, 12), 3)
    kept = KeptNoise(in_plane_autocovariance(torch.full((8, 8), 0.25), 2))
    out = guided_nonlocal_means(noisy, noisy, 0.0, kept_noise=kept)  # no noise: identity
    np.testing.assert_array_equal(out, noisy)
    assert kept.total == pytest.approx(0.25 * noisy.size)


def test_kept_noise_refuses_what_it_cannot_measure():
    with pytest.raises(ValueError, match="lags"):
        KeptNoise(torch.ones(2, 2))
    with pytest.raises(ValueError, match="stride"):
        noisy = np.zeros((4, 12, 12), np.float32)
        guided_nonlocal_means(noisy, noisy, 1.0, stride=(1, 2, 2),
                              kept_noise=KeptNoise(torch.ones(3, 3)))


def risk_weight_cases(seed):
    """Two linear estimates of a phantom in white noise: a 3x3 in-plane box mean (kept
    noise sigma^2 / 9 per voxel) and the noisy data itself (all of it)."""
    sigma = 0.1
    clean = smooth_phantom((10, 40, 40))
    noise = white_noise(sigma, clean.shape, seed)
    noisy = clean + noise
    box = torch.nn.functional.avg_pool2d(torch.from_numpy(noisy)[:, None], 3, 1, 1,
                                         count_include_pad=False)[:, 0].numpy()
    # The box's kept noise: 1/9 of sigma^2 inside, 1/6 and 1/4 on the border (fewer pixels)
    count = torch.nn.functional.avg_pool2d(torch.ones((1, 1) + clean.shape[1:]), 3, 1, 1,
                                           divisor_override=1)[0, 0]
    kept_box = float((sigma ** 2 / count).sum()) * clean.shape[0]
    return clean, noisy, box, kept_box, sigma


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sure_weights_are_near_the_weights_a_clean_image_would_choose(seed):
    clean, noisy, box, kept_box, sigma = risk_weight_cases(seed)
    kept_noisy = sigma ** 2 * noisy.size
    weights = sure_weights(noisy, [box, noisy], [kept_box, kept_noisy])
    difference = (box - noisy).astype(np.float64).ravel()
    oracle = float(np.clip(np.dot(difference, (clean - noisy).ravel()) /
                           np.dot(difference, difference), 0, 1))
    assert 0 < oracle < 1  # the mix beats both: a real choice to make
    assert weights[0] == pytest.approx(oracle, abs=0.05)
    assert sum(weights) == pytest.approx(1.0)
    # Read the other way round, the same mix.
    swapped = sure_weights(noisy, [noisy, box], [kept_noisy, kept_box])
    assert swapped == pytest.approx(weights[::-1], abs=1e-6)


def test_sure_weights_of_three_stages_find_the_best_mix_on_the_simplex():
    """Three linear estimates (3x3 box, 5x5 box, the input): the weights minimise the
    estimated risk over every mix, within a fine grid's best, and score within a small
    margin of the mix a clean image would choose."""
    clean, noisy, box3, kept3, sigma = risk_weight_cases(0)
    box5 = torch.nn.functional.avg_pool2d(torch.from_numpy(noisy)[:, None], 5, 1, 2,
                                          count_include_pad=False)[:, 0].numpy()
    count = torch.nn.functional.avg_pool2d(torch.ones((1, 1) + clean.shape[1:]), 5, 1, 2,
                                           divisor_override=1)[0, 0]
    kept5 = float((sigma ** 2 / count).sum()) * clean.shape[0]
    stages, kept = [box3, box5, noisy], [kept3, kept5, sigma ** 2 * noisy.size]
    weights = np.array(sure_weights(noisy, stages, kept))
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)

    def risk(w):
        out = sum(wi * st.astype(np.float64) for wi, st in zip(w, stages))
        return float(((out - noisy) ** 2).sum()) + 2 * float(np.dot(w, kept))

    def error(w):
        return float(((sum(wi * st for wi, st in zip(w, stages)) - clean) ** 2).sum())

    grid = [np.array([a, b, 1 - a - b]) for a in np.linspace(0, 1, 41)
            for b in np.linspace(0, 1, 41) if a + b <= 1 + 1e-9]
    assert risk(weights) <= min(risk(w) for w in grid) + 1e-9
    assert error(weights) <= 1.02 * min(error(w) for w in grid)


def test_sure_weights_prefer_the_stage_that_is_right_and_split_evenly_without_a_choice():
    clean, noisy, _, _, sigma = risk_weight_cases(0)
    kept_noisy = sigma ** 2 * noisy.size
    assert sure_weights(noisy, [clean, noisy], [0.0, kept_noisy]) == (1.0, 0.0)
    assert sure_weights(noisy, [noisy, clean], [kept_noisy, 0.0]) == (0.0, 1.0)
    assert sure_weights(noisy, [clean, clean, clean], [0.0] * 3) == (1 / 3,) * 3
    with pytest.raises(ValueError):
        sure_weights(noisy, [clean, noisy], [0.0])


def test_mix_is_the_weighted_sum_and_may_overwrite_a_stage():
    first = np.full((20, 3, 3), 4.0, np.float32)
    second = np.zeros((20, 3, 3), np.float32)
    third = np.full((20, 3, 3), 8.0, np.float32)
    np.testing.assert_allclose(mix([first, second], [0.25, 0.75]), 1.0)
    out = mix([first, second, third], [0.5, 0.25, 0.25], out=first)  # chunked, in place
    assert out is first
    np.testing.assert_allclose(first, 4.0)
