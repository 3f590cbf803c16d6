import threading

import numpy as np
import pytest

from nsn2n.errors import Cancelled, InputError
from nsn2n.methods.nsn2n import NSN2NConfig, config_for, estimate_seconds, fit_predict
from nsn2n.metrics import psnr

TINY = dict(steps=60, width=8, depth=2, patch=16, batch=2, tta=2, learning_rate=3e-3)


def test_config_validation():
    with pytest.raises(ValueError, match="patch"):
        NSN2NConfig(patch=20, depth=3)
    with pytest.raises(ValueError, match="tau"):
        NSN2NConfig(tau=2.0)
    with pytest.raises(ValueError, match="preset"):
        config_for("turbo")
    with pytest.raises(ValueError, match="guard_factor"):
        NSN2NConfig(guard_factor=-1.0)
    with pytest.raises(ValueError, match="nonlocal_strength"):
        NSN2NConfig(nonlocal_strength=-0.1)
    with pytest.raises(ValueError, match="tau_cap"):
        NSN2NConfig(tau_cap=0.5)
    assert config_for("fast").steps < config_for("balanced").steps < config_for("best").steps
    assert config_for("balanced", steps=7).steps == 7
    assert NSN2NConfig().lambda_rc == 0.5 and NSN2NConfig().lambda_ic == 1.0


def test_denoises_a_tiny_noisy_volume(noisy_phantom):
    clean, noisy = noisy_phantom
    out, report = fit_predict(noisy, NSN2NConfig(**TINY))
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert psnr(out, clean) > psnr(noisy, clean) + 2.0
    assert 0 < report.matched_fraction <= 1 and report.steps == TINY["steps"]


def test_residual_guard_runs_after_prediction_and_can_be_turned_off(noisy_phantom):
    # What the guard does is tested in test_guard.py and measured by `python -m benchmarks
    # low-noise`; here: fit_predict applies it, reports it, and factor 0 skips it.
    _, noisy = noisy_phantom
    guarded, report = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=10)))
    raw, off = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=10, guard_factor=0.0)))
    assert 0.0 <= report.guard_returned <= 1.0 and off.guard_returned == 0.0
    between = np.minimum(raw, noisy) - 1e-4, np.maximum(raw, noisy) + 1e-4
    assert not np.array_equal(guarded, raw) or report.guard_returned == 0.0
    assert np.mean((guarded >= between[0]) & (guarded <= between[1])) > 0.95


def test_same_seed_is_bit_identical_other_seed_differs(noisy_phantom):
    _, noisy = noisy_phantom
    a, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=15)))
    b, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=15)))
    c, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=15, seed=1)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("stride,strength,last", [(2, 0.3, "refine"), (0, 0.3, "refine"),
                                                 (0, 0.0, "predict")])
def test_progress_covers_every_phase_and_ends_complete(noisy_phantom, stride, strength, last):
    _, noisy = noisy_phantom
    seen = []
    fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=5, wiener_stride=stride,
                                          nonlocal_strength=strength)),
                progress=seen.append)
    phases = [p.phase for p in seen]
    assert phases[0] == "prepare" and "train" in phases and "predict" in phases
    assert phases[-1] == last and seen[-1].step == seen[-1].total


def test_cancel_stops_training(noisy_phantom):
    _, noisy = noisy_phantom
    cancel = threading.Event()

    def progress(p):
        if p.phase == "train" and p.step == 2:
            cancel.set()

    with pytest.raises(Cancelled):
        fit_predict(noisy, NSN2NConfig(**TINY), progress=progress, cancel=cancel)


def test_supervised_reference_and_ablation_variants_run(noisy_phantom):
    clean, noisy = noisy_phantom
    plain = NSN2NConfig(**dict(TINY, steps=5, use_mask=False, lambda_rc=0, lambda_ic=0,
                               run_length=2))
    out, report = fit_predict(noisy, plain)
    assert report.matched_fraction == 1.0
    out, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=5)), reference=clean)
    assert out.shape == clean.shape


def test_too_few_slices_or_tiny_slices_are_input_errors():
    with pytest.raises(InputError, match="at least 3"):
        fit_predict(np.random.rand(2, 16, 16).astype(np.float32), NSN2NConfig(**TINY))
    with pytest.raises(InputError, match="too small"):
        fit_predict(np.random.rand(5, 3, 16).astype(np.float32), NSN2NConfig(**TINY))


def test_runtime_estimate_is_measured_and_grows_with_the_work():
    import torch

    state = torch.random.get_rng_state()
    short = estimate_seconds((8, 32, 32), NSN2NConfig(**dict(TINY, steps=10)))
    long = estimate_seconds((80, 64, 64), NSN2NConfig(**dict(TINY, steps=10_000)))
    assert 0 < short < long < float("inf")
    assert torch.equal(torch.random.get_rng_state(), state)  # no global side effect


def test_back_off_gives_back_removed_anatomy_until_the_check_passes():
    import torch

    from nsn2n.methods.nsn2n.method import back_off
    from nsn2n.noise import NoiseEstimate, band_stds
    from nsn2n.refine.guard import BAND_SCALES

    rng = np.random.default_rng(0)
    clean = np.zeros((8, 48, 48), np.float32)
    clean[:, 12:36, 12:36] = 1.0
    clean[:, 20:28, 4:44] = 0.5
    noisy = (clean + rng.normal(0, 0.05, clean.shape)).astype(np.float32)
    lost = np.full_like(noisy, float(noisy.mean()))  # a "denoiser" that kept nothing
    spectrum = torch.full((8, 8), 0.05 ** 2)
    noise = NoiseEstimate(0.05, spectrum, band_stds(spectrum, BAND_SCALES), 0.05)
    config = config_for("fast", guard_factor=64.0)  # a first guard that gave back nothing
    output, check, backoffs = back_off(noisy, lost.copy(), noise, config)
    assert backoffs >= 1
    assert np.abs(output - clean).mean() < 0.5 * np.abs(lost - clean).mean()
    assert check.ratio < metrics_ratio(noisy, lost, 0.05)


def metrics_ratio(noisy, output, sigma):
    from nsn2n.metrics import method_noise

    return method_noise(noisy, output, sigma).ratio
