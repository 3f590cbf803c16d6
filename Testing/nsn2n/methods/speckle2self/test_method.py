import threading

import numpy as np
import pytest

from nsn2n import metrics
from nsn2n.errors import Cancelled
from nsn2n.inference import pad_to_multiple
from nsn2n.methods.speckle2self import Speckle2SelfConfig, config_for, fit_predict
from nsn2n.methods.speckle2self.method import consistency_ramp
from Testing.simulators.speckle import SpeckleCase, lesion_regions, simulate

TINY = dict(pretrained=False, width=8, levels=3, patch=32, batch=4)


def speckled(frames=4, size=40, seed=0):
    """Log-compressed speckle over a disk and a bright band; returns clean, noisy."""
    data = simulate(SpeckleCase("tiny", shape=(frames, size, size), seed=seed))
    return data["clean"], data["noisy"]


def test_config_validation_and_presets():
    assert config_for("fast").steps < config_for("balanced").steps < config_for("best").steps
    assert config_for("fast", steps=7).steps == 7
    for bad in (dict(steps=0), dict(patch=40), dict(beta1=1.0), dict(levels=1),
                dict(max_seconds=0), dict(consistency_weight=-1), dict(consistency_warmup=0.5),
                dict(search_grains=-1), dict(nonlocal_strength=-1), dict(guard_factor=-1)):
        with pytest.raises(ValueError):
            Speckle2SelfConfig(**bad)
    with pytest.raises(ValueError):
        config_for("ultra")


def test_consistency_is_off_during_the_warm_up_then_ramps_to_full():
    assert consistency_ramp(0.0, 0.3) == 0 and consistency_ramp(0.3, 0.3) == 0
    assert consistency_ramp(0.45, 0.3) == pytest.approx(0.5)
    assert consistency_ramp(0.6, 0.3) == 1 and consistency_ramp(1.0, 0.3) == 1
    assert consistency_ramp(0.0, 0.0) == 1  # no warm-up: the published constant weight


def test_padding_reaches_a_multiple_and_crops_back():
    import torch

    x = torch.rand(2, 1, 37, 50)
    padded = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (48, 64)
    assert torch.equal(padded[..., :37, :50], x)
    tiny = pad_to_multiple(torch.rand(1, 1, 5, 7), 16)  # too small to reflect
    assert tiny.shape[-2:] == (16, 16)


def test_odd_sized_frames_keep_shape_and_each_frame_keeps_its_range():
    _, noisy = speckled(frames=3, size=37)
    noisy = noisy[:, :, 3:]  # 37 x 34
    noisy[1] = noisy[1] * 50 + 100  # frames on different scales
    out, report = fit_predict(noisy, Speckle2SelfConfig(steps=3, **TINY))
    assert out.shape == noisy.shape and report.steps == 3
    assert report.search_radius_px == pytest.approx(7 * report.speckle_grain_px, abs=1)
    for frame, result in zip(noisy, out):
        assert frame.min() - 1e-6 <= result.min() and result.max() <= frame.max() + 1e-6


def test_same_seed_same_output_and_seed_matters():
    _, noisy = speckled(frames=2, size=32)
    config = Speckle2SelfConfig(steps=4, seed=3, **TINY)
    a, _ = fit_predict(noisy, config)
    b, _ = fit_predict(noisy, config)
    c, _ = fit_predict(noisy, Speckle2SelfConfig(steps=4, seed=4, **TINY))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_product_removes_speckle_and_keeps_lesion_contrast():
    # The shipped weights, a few fine-tuning steps, the guided average and the guard, on a
    # stack the weights never saw (the benchmark's phantom layout at 128 px).
    data = simulate(SpeckleCase("tiny", shape=(4, 128, 128), seed=1))
    out, report = fit_predict(data["noisy"], config_for("fast", steps=5))
    clean, regions = data["clean"], lesion_regions(data)

    def scores(image):  # the ultrasound benchmark's conventions (affine fit to the reference)
        fitted = metrics.affine_fit(image, clean)
        return (metrics.ssim_frames(fitted, clean), metrics.psnr(fitted, clean),
                float(np.mean([metrics.gcnr(image, t, b) for t, b in regions])))

    before, after = scores(data["noisy"]), scores(out)
    assert report.steps == 5 and report.search_radius_px > 0
    assert after[0] > before[0] + 0.3, (before, after)  # SSIM, measured 0.401 -> 0.830
    assert after[1] > before[1] + 3.0, (before, after)  # PSNR, measured 21.58 -> 25.35 dB
    assert after[2] > before[2] + 0.05, (before, after)  # gCNR, measured 0.655 -> 0.782


def test_cancel_stops_before_anything_is_returned():
    _, noisy = speckled(frames=2, size=32)
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        fit_predict(noisy, Speckle2SelfConfig(steps=1000, **TINY), cancel=event)
