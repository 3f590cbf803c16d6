import dataclasses
import threading

import numpy as np
import pytest

from nsn2n.errors import Cancelled, InputError
from nsn2n.methods.nsn2n import NSN2NConfig, config_for, estimate, fit_predict
from nsn2n.methods.nsn2n.method import measure_costs, positions
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
    # Work grows from fast to best: training steps, then a denser Wiener stage.
    work = [(config_for(p).steps * config_for(p).ensemble, -config_for(p).wiener_stride)
            for p in ("fast", "balanced", "best")]
    assert work == sorted(set(work))
    with pytest.raises(ValueError, match="ensemble"):
        NSN2NConfig(ensemble=0)
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


def test_the_refinement_stages_are_mixed_by_reported_weights(noisy_phantom, monkeypatch):
    from nsn2n.methods.nsn2n import method as nsn2n_method

    _, noisy = noisy_phantom
    config = NSN2NConfig(**dict(TINY, steps=10))
    chosen, first = fit_predict(noisy, config)
    assert set(first.stage_weights) == {"nonlocal", "block_matching", "wiener"}
    assert all(w >= 0 for w in first.stage_weights.values())
    assert sum(first.stage_weights.values()) == pytest.approx(1.0, abs=1e-3)
    _, alone = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=10, nonlocal_strength=0.0,
                                                     block_stride=0)))
    assert alone.stage_weights is None  # one stage: nothing to mix
    _, two = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=10, block_stride=0)))
    assert set(two.stage_weights) == {"nonlocal", "wiener"}
    # The mix is the one sure_weights chose: forcing those weights gives the same output.
    monkeypatch.setattr(nsn2n_method, "sure_weights",
                        lambda *args: tuple(first.stage_weights.values()))
    forced, _ = fit_predict(noisy, config)
    np.testing.assert_allclose(forced, chosen, atol=1e-3)


def test_same_seed_is_bit_identical_other_seed_differs(noisy_phantom):
    _, noisy = noisy_phantom
    a, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=15)))
    b, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=15)))
    c, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=15, seed=1)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("stride,strength,block,last", [
    (2, 0.3, 3, "refine"), (0, 0.3, 0, "refine"), (0, 0.0, 3, "refine"),
    (0, 0.0, 0, "predict")])
def test_progress_covers_every_phase_and_ends_complete(noisy_phantom, stride, strength, block,
                                                       last):
    _, noisy = noisy_phantom
    seen = []
    fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=5, wiener_stride=stride,
                                          nonlocal_strength=strength, block_stride=block)),
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
    costs = measure_costs(NSN2NConfig(**TINY), patch=16)
    assert torch.equal(torch.random.get_rng_state(), state)  # no global side effect
    assert 0 < costs.per_step < float("inf")
    assert set(costs.per_voxel) == {"prepare", "predict", "refine"}
    assert all(0 < cost < float("inf") for cost in costs.per_voxel.values())
    short = costs.estimate((8, 32, 32), NSN2NConfig(**dict(TINY, steps=10)))
    long = costs.estimate((80, 64, 64), NSN2NConfig(**dict(TINY, steps=10_000)))
    assert set(short.phases) == {"prepare", "train", "predict", "refine"}
    assert long.phases["train"] == pytest.approx(1000 * short.phases["train"])
    for phase in ("prepare", "predict"):  # 40 times the voxels
        assert long.phases[phase] == pytest.approx(40 * short.phases[phase])
    # The Wiener stage by its patches, block matching by its references, not their voxels.
    assert set(costs.per_position) == {"wiener", "block"}
    assert all(cost > 0 for cost in costs.per_position.values())
    config = NSN2NConfig(**TINY)

    def by_position(shape):
        return sum(cost * positions(name, shape, config)
                   for name, cost in costs.per_position.items())

    assert long.phases["refine"] == pytest.approx(
        40 * (short.phases["refine"] - by_position((8, 32, 32))) + by_position((80, 64, 64)))
    fewer_transforms = costs.estimate((8, 32, 32), NSN2NConfig(**dict(TINY, steps=10, tta=1)))
    assert fewer_transforms.phases["predict"] == pytest.approx(short.phases["predict"] / 2)
    capped = costs.estimate((8, 32, 32), NSN2NConfig(**dict(TINY, steps=10 ** 6,
                                                             max_seconds=0.5)))
    assert capped.phases["train"] == pytest.approx(max(0.5, capped.train_floor))
    assert estimate((8, 32, 32), NSN2NConfig(**TINY)).seconds > 0
    # A time budget may not cut training below a share of its steps, at most a fixed count.
    assert short.train_floor == pytest.approx(3 * costs.per_step)  # 30 % of 10 steps
    assert long.train_floor == pytest.approx(200 * costs.per_step)
    assert capped.train_floor == pytest.approx(200 * costs.per_step)  # not the budget's


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


def test_noise_shared_by_neighbouring_slices_is_what_the_run_warns_about(phantom):
    from nsn2n.methods.nsn2n.method import ACROSS_SLICES, WARNING, run_warning
    from nsn2n.metrics import MethodNoise
    from nsn2n.noise import ACROSS_SLICE_RATIO

    from Testing.simulators.volumes import shared_across_slices

    white = np.random.default_rng(0).normal(0, 0.08, (phantom.shape[0] + 2,) + phantom.shape[1:])
    noisy = (phantom + shared_across_slices(white, 0.5)).astype(np.float32)  # correlation 0.67
    _, report = fit_predict(noisy, NSN2NConfig(**dict(TINY, steps=10)))
    assert report.across_to_inplane < ACROSS_SLICE_RATIO
    assert report.warning == ACROSS_SLICES.format(report.across_to_inplane)
    # Its own warning replaces the method-noise one, which a low estimate sets off.
    failed, passed = MethodNoise(0.1, 3.0, 0.5), MethodNoise(0.01, 0.5, 0.0)
    fine = dataclasses.replace(estimate_of(report), inplane_sigma=None)
    assert run_warning(fine, failed) == WARNING and run_warning(fine, passed) is None
    assert run_warning(estimate_of(report), passed).startswith("the noise looks shared")


def estimate_of(report):
    """A NoiseEstimate with the report's across/in-plane ratio."""
    import torch

    from nsn2n.noise import NoiseEstimate

    return NoiseEstimate(0.05, torch.full((8, 8), 0.05 ** 2), (0.05, 0.05, 0.05), 0.05,
                         inplane_sigma=0.05 / report.across_to_inplane)


def metrics_ratio(noisy, output, sigma):
    from nsn2n.metrics import method_noise

    return method_noise(noisy, output, sigma).ratio


def test_small_volumes_train_fewer_steps_and_explicit_steps_are_kept():
    from nsn2n.methods.nsn2n.config import FULL_BUDGET_VOXELS, MIN_STEP_SHARE, steps_for

    balanced = config_for("balanced")
    assert steps_for(balanced, (64, 256, 256)) == balanced.steps  # above the full budget
    half = steps_for(balanced, (1, 1, FULL_BUDGET_VOXELS // 2))
    assert half == round(balanced.steps / 2)
    assert steps_for(balanced, (3, 16, 16)) == round(balanced.steps * MIN_STEP_SHARE)
    fast, best = config_for("fast"), config_for("best")
    for shape in ((20, 72, 72), (32, 112, 112), (48, 224, 192)):  # presets keep their order
        assert steps_for(fast, shape) < steps_for(balanced, shape) <= steps_for(best, shape)
    explicit = config_for("balanced", steps=37)
    assert steps_for(explicit, (3, 16, 16)) == 37


def test_an_ensemble_averages_members_trained_with_other_seeds(noisy_phantom):
    _, noisy = noisy_phantom
    seen = []
    one, _ = fit_predict(noisy, NSN2NConfig(**dict(TINY, guard_factor=0.0)))
    pair, report = fit_predict(noisy, NSN2NConfig(**dict(TINY, guard_factor=0.0, ensemble=2)),
                               progress=seen.append)
    assert report.steps == 2 * TINY["steps"]
    train = [p for p in seen if p.phase == "train"]
    assert [p.step for p in train] == list(range(1, 2 * TINY["steps"] + 1))
    assert {p.total for p in train} == {2 * TINY["steps"]}
    assert train[-1].remaining == pytest.approx(0.0, abs=1e-6)
    assert not np.array_equal(one, pair) and np.isfinite(pair).all()


def test_refine_costs_count_patch_positions():
    # The 8-slice probe has one Wiener position through its depth; a 48-slice volume 41
    # (stride 1).
    def wiener(shape, stride):
        return positions("wiener", shape, NSN2NConfig(wiener_stride=stride))

    assert wiener((8, 128, 128), 1) == 1 * 121 * 121
    assert wiener((48, 224, 192), 1) == 41 * 217 * 185
    assert wiener((48, 224, 192), 2) == 21 * 109 * 93
    assert wiener((5, 6, 40), 2) == 1 * 1 * 17  # patches clipped to the stack
    assert wiener((48, 224, 192), 0) == 0  # the stage is off
    # Block matching: 4-voxel cubes every 3 voxels, the last one flush with the end.
    block = positions("block", (48, 224, 192), NSN2NConfig(block_stride=3))
    assert block == 16 * 75 * 64
    assert positions("block", (2, 5, 40), NSN2NConfig(block_stride=3)) == 1 * 2 * 13


def test_ct_runs_and_is_estimated_without_block_matching():
    from nsn2n.methods.nsn2n.method import NSN2N, for_modality
    from nsn2n.options import DenoiseOptions

    config = NSN2NConfig()
    assert config.block_stride > 0
    assert for_modality(config, "CT").block_stride == 0
    assert for_modality(config, "ct").block_stride == 0
    assert for_modality(config, "MR") == config and for_modality(config, None) == config
    # The pipeline's estimate passes the modality it found in the data through the options.
    assert NSN2N().config(DenoiseOptions(modality="CT")).block_stride == 0
    assert NSN2N().config(DenoiseOptions()).block_stride == config.block_stride
