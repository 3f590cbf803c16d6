import numpy as np
import pytest

from nsn2n.errors import InputError
from nsn2n.methods.series.method import Repeats, kind_groups
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.volume import Geometry, Volume


def test_kinds_are_every_stride_th_volume_in_time_order():
    groups = kind_groups(7, 2)
    assert [g.tolist() for g in groups] == [[0, 2, 4, 6], [1, 3, 5]]
    assert [g.tolist() for g in kind_groups(3, 1)] == [[0, 1, 2]]


def test_the_mean_around_a_volume_leaves_out_what_it_is_asked_to():
    stack = np.random.default_rng(0).random((9, 5, 4)).astype(np.float32)
    repeats = Repeats([stack], context=2)
    for index, leave_out in ((0, (0,)), (4, (4, 5)), (8, (8, 7)), (3, (3,))):
        low, high = max(0, index - 2), min(8, index + 2)
        kept = [t for t in range(low, high + 1) if t not in leave_out]
        np.testing.assert_allclose(repeats.mean_around(0, index, leave_out),
                                   stack[kept].mean(0), atol=1e-6)
    inputs = repeats.inputs(0)
    assert inputs.shape == (9, 2, 5, 4) and np.array_equal(inputs[:, 0], stack)


def static_series(count=8, noise=0.1, seed=0):
    """A static anatomy (fast-changing between slices) repeated ``count`` times."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[0:4, 0:32, 0:32]
    truth = 1.0 + 0.5 * np.sin(x / 3.0 + 2.0 * z) * np.cos(y / 4.0 - z)
    truth = (truth * (np.hypot(y - 15.5, x - 15.5) < 14)).astype(np.float32)
    noisy = truth + rng.normal(0, noise, (count,) + truth.shape).astype(np.float32)
    return truth, Volume(noisy, Geometry.identity((1.0, 1.0, 5.0)), "MR", dimension=4)


def test_a_series_is_denoised_whole_closer_to_its_anatomy_and_reproducibly():
    truth, volume = static_series()
    options = DenoiseOptions(preset="fast", steps=60, seed=1, bias_correction="off")
    result, report = denoise(volume, options)
    assert report.method == "series" and report.volumes == 8  # auto: a 4-D input
    assert result.dimension == 4 and result.array.shape == volume.array.shape
    before = np.mean((volume.array - truth) ** 2)
    after = np.mean((result.array - truth) ** 2)
    assert after < 0.5 * before
    assert report.noise_sigma == pytest.approx(0.1, rel=0.2)  # what the repeats show
    again, _ = denoise(volume, options)
    assert np.array_equal(again.array, result.array)


def test_a_series_too_short_for_its_stride_is_refused():
    _, volume = static_series(count=5)
    with pytest.raises(InputError, match="at least 3 volumes of each kind"):
        denoise(volume, DenoiseOptions(method="series", series_stride=2, steps=2))
    with pytest.raises(InputError, match="4-D series"):
        denoise(Volume(volume.array[0], volume.geometry, "MR"),
                DenoiseOptions(method="series", steps=2))
