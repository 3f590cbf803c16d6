import dataclasses

import numpy as np
import pytest

from nsn2n.errors import InputError
from nsn2n.methods.nsn2n.method import rician_sigma_for
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import (MIN_TRAINING_SHARE, budget_warning, denoise, estimate,
                             method_for, training_seconds)
from nsn2n.runtime import Estimate
from nsn2n.volume import Geometry, Volume, resolve_slice_axis
from Testing.simulators.volumes import add_rician

FAST = dict(steps=40)


def test_slice_axis_is_the_largest_spacing_and_overridable():
    # ITK spacing is (i, j, k); array axes are (k, j, i)
    assert resolve_slice_axis(Geometry.identity((0.5, 0.5, 3.0))) == 0
    assert resolve_slice_axis(Geometry.identity((3.0, 0.5, 0.5))) == 2
    assert resolve_slice_axis(Geometry.identity((0.5, 4.0, 0.5))) == 1
    assert resolve_slice_axis(Geometry.identity((1.0, 1.0, 1.0))) == 0
    # nearly isotropic (a real 2 mm diffusion scan): the file's slices, not an in-plane axis
    assert resolve_slice_axis(Geometry.identity((2.0, 2.0, 1.99366))) == 0
    assert resolve_slice_axis(Geometry.identity((2.0, 1.8, 1.8))) == 2  # 10 % apart
    assert resolve_slice_axis(Geometry.identity((0.5, 0.5, 3.0)), 2) == 2


def ct_like(phantom, seed=0):
    rng = np.random.default_rng(seed)
    hu = phantom * 1200 - 1000 + rng.normal(0, 40, phantom.shape)
    return np.rint(hu).astype(np.int16)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_any_slice_axis_keeps_shape_type_and_geometry(phantom, axis):
    array = np.moveaxis(ct_like(phantom), 0, axis)  # slices run along `axis`
    spacing = [0.8, 0.8, 0.8]
    spacing[2 - axis] = 2.5
    geometry = Geometry(tuple(spacing), (1.0, 2.0, 3.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))
    result, report = denoise(Volume(array, geometry), DenoiseOptions(**FAST))
    assert report.slice_axis == axis and report.modality == "CT"
    assert result.array.shape == array.shape and result.array.dtype == np.int16
    assert result.geometry == geometry
    assert not report.bias_correction
    # CT (here from its Hounsfield units) is refined without block matching.
    assert set(report.stage_weights) == {"nonlocal", "wiener"}


def test_mri_gets_rician_correction_and_darker_background(phantom):
    clean = np.zeros((8, 48, 48), np.float32)
    clean[:, 12:36, 12:36] = 0.3 + 0.5 * phantom[:, :24, :24]
    noisy = add_rician(clean, 0.05, seed=0) * 1000
    raw, _ = denoise(Volume(noisy, Geometry.identity()),
                     DenoiseOptions(bias_correction=False, **FAST))
    corrected, report = denoise(Volume(noisy, Geometry.identity()), DenoiseOptions(**FAST))
    assert report.modality == "MR" and report.bias_correction
    assert set(report.stage_weights) == {"nonlocal", "block_matching", "wiener"}
    assert report.rician_sigma == pytest.approx(50, rel=0.2)
    air = clean == 0
    # 40 steps leave the air noisy; the correction still pulls its floor well down
    assert corrected.array[air].mean() < 0.75 * raw.array[air].mean()


def test_same_seed_same_output(phantom):
    volume = Volume(ct_like(phantom), Geometry.identity())
    a, _ = denoise(volume, DenoiseOptions(steps=10, seed=3))
    b, _ = denoise(volume, DenoiseOptions(steps=10, seed=3))
    assert np.array_equal(a.array, b.array)


def test_input_array_is_not_modified(phantom):
    array = ct_like(phantom)
    before = array.copy()
    denoise(Volume(array, Geometry.identity()), DenoiseOptions(steps=3))
    assert np.array_equal(array, before)


def test_bad_volumes_are_input_errors():
    with pytest.raises(InputError, match="at least 3"):
        denoise(Volume(np.random.rand(2, 16, 16), Geometry.identity((1, 1, 5))))
    with pytest.raises(InputError, match="constant"):
        denoise(Volume(np.zeros((4, 16, 16)), Geometry.identity()))
    with pytest.raises(InputError, match="negative"):
        denoise(Volume(np.random.randn(4, 16, 16), Geometry.identity()),
                DenoiseOptions(bias_correction=True))


def test_rician_correction_only_where_a_rayleigh_background_is_seen():
    rng = np.random.default_rng(0)
    tight_crop = rng.uniform(500, 1000, (6, 32, 32))  # MR tissue only, no air
    assert rician_sigma_for(tight_crop, "MR", None) is None
    assert rician_sigma_for(tight_crop, "MR", True) > 0  # forced: cross-slice estimate
    assert rician_sigma_for(tight_crop, "CT", None) is None
    assert rician_sigma_for(tight_crop, "MR", False) is None
    with_air = np.zeros((6, 64, 64))
    with_air[:, 16:48, 16:48] = 0.8
    noisy = add_rician(with_air, 0.05, seed=0)
    assert rician_sigma_for(noisy, "MR", None) == pytest.approx(0.05, rel=0.15)
    signed = rng.normal(0, 1, (6, 16, 16))
    assert rician_sigma_for(signed, "MR", None) is None


SPECKLE_FAST = dict(steps=2)


def test_auto_picks_speckle2self_for_ultrasound_only():
    def picked(volume, options=DenoiseOptions()):
        return method_for(volume, options).name

    array = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    us = Volume(array, Geometry.identity(), "US")
    assert picked(us) == "speckle2self"
    assert picked(Volume(array, Geometry.identity(), "MR")) == "nsn2n"
    assert picked(Volume(array, Geometry.identity())) == "nsn2n"
    assert picked(Volume(array, Geometry.identity()), DenoiseOptions(modality="US")) == \
        "speckle2self"
    assert picked(us, DenoiseOptions(method="nsn2n")) == "nsn2n"


def test_rgb_ultrasound_cine_becomes_gray_with_geometry_and_type_kept(caplog):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 200, (3, 21, 34)).astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    rgb[0, :4, :4] = (255, 0, 0)  # a coloured annotation
    geometry = Geometry((0.2, 0.3, 1.0), (1.0, 2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with caplog.at_level("WARNING"):
        result, report = denoise(Volume(rgb, geometry, "US"),
                                 DenoiseOptions(method="speckle2self", **SPECKLE_FAST))
    assert "converted to gray" in caplog.text
    assert report.method == "speckle2self" and report.converted_to_gray
    assert result.array.shape == gray.shape and result.array.dtype == np.uint8
    assert result.geometry == geometry and result.components == 1
    assert report.slice_axis == 0


def test_single_2d_image_and_explicit_method():
    image = np.random.default_rng(0).random((1, 30, 40)).astype(np.float32) * 5 - 1
    volume = Volume(image, Geometry.identity((1.5, 1.5, 1.0)), dimension=2)
    result, report = denoise(volume, DenoiseOptions(method="speckle2self", **SPECKLE_FAST))
    assert report.slice_axis == 0 and result.dimension == 2
    assert result.array.shape == image.shape
    assert image.min() - 1e-5 <= result.array.min() and result.array.max() <= image.max() + 1e-5
    with pytest.raises(InputError, match="2-D"):
        denoise(volume, DenoiseOptions(method="nsn2n", **SPECKLE_FAST))


def test_a_noise_level_the_user_gives_is_the_one_used(phantom):
    volume = Volume(ct_like(phantom), Geometry.identity((0.8, 0.8, 2.5)))
    _, report = denoise(volume, DenoiseOptions(steps=5, noise_sigma=25.0))
    assert report.noise_sigma == pytest.approx(25.0, rel=1e-4)
    _, estimated = denoise(volume, DenoiseOptions(steps=5))
    assert estimated.noise_sigma == pytest.approx(40, rel=0.2)  # what ct_like added
    ultrasound = Volume(np.random.default_rng(0).random((3, 32, 32)).astype(np.float32),
                        Geometry.identity(), "US")
    with pytest.raises(InputError, match="noise-sigma is used by the nsn2n method"):
        denoise(ultrasound, DenoiseOptions(noise_sigma=3.0, **SPECKLE_FAST))


def test_estimate_follows_the_method():
    volume = Volume(np.random.default_rng(0).random((2, 32, 32)).astype(np.float32),
                    Geometry.identity(), "US")
    assert estimate(volume, DenoiseOptions(method="speckle2self", steps=5)).seconds > 0


def test_the_report_holds_the_noise_in_the_inputs_units_and_the_method_noise_check(phantom):
    rng = np.random.default_rng(3)
    hu = np.rint(phantom * 1200 - 1000 + rng.normal(0, 40, phantom.shape)).astype(np.int16)
    _, report = denoise(Volume(hu, Geometry.identity((0.7, 0.7, 2.5))), DenoiseOptions(**FAST))
    assert report.noise_sigma == pytest.approx(40, rel=0.2)
    assert report.residual_to_noise == pytest.approx(report.residual_rms / report.noise_sigma,
                                                     abs=1e-3)
    assert 0 <= report.structure_in_residual <= 1 and report.backoffs >= 0
    assert "noise" in report.summary() and report.to_dict()["noise_sigma"] == report.noise_sigma


def test_a_time_budget_leaves_the_phases_after_training_their_time():
    estimated = Estimate(dict(prepare=1.0, train=50.0, predict=4.0, refine=5.0))
    assert training_seconds(estimated, 60.0) == pytest.approx(50.0)
    assert training_seconds(estimated, 30.0) == pytest.approx(20.0)
    assert training_seconds(estimated, 5.0) == pytest.approx(0.5)  # never nothing
    floored = dataclasses.replace(estimated, train_floor=15.0)
    assert training_seconds(floored, 30.0) == pytest.approx(20.0)
    assert training_seconds(floored, 20.0) == pytest.approx(15.0)  # overrun, not ruined


def test_a_budget_below_the_training_floor_is_overrun_and_the_user_told(phantom):
    volume = Volume(phantom.astype(np.float32), Geometry.identity(), "MR")
    full = estimate(volume, DenoiseOptions(steps=50))
    assert full.train_floor == pytest.approx(0.3 * full.phases["train"], rel=0.05)
    # Half of what the phases after training take: no training fits.  Each estimate is
    # measured anew (timings differ between calls), so compare within one estimate.
    rest = full.seconds - full.phases["train"]
    tight = DenoiseOptions(steps=50, max_minutes=0.5 * rest / 60)
    bounded = estimate(volume, tight)
    assert bounded.phases["train"] == pytest.approx(
        max(bounded.train_floor, MIN_TRAINING_SHARE * tight.max_seconds))
    assert bounded.train_floor > 0
    assert "too short" in budget_warning(bounded, tight)
    roomy = DenoiseOptions(steps=50, max_minutes=2 * full.seconds / 60)
    assert budget_warning(estimate(volume, roomy), roomy) is None
    _, report = denoise(volume, tight, estimated=bounded)
    assert "too short" in report.warning


def test_max_minutes_bounds_the_estimate_and_the_training(phantom):
    volume = Volume(phantom.astype(np.float32), Geometry.identity(), "MR")
    unbounded = estimate(volume, DenoiseOptions(steps=10 ** 6))
    bounded = estimate(volume, DenoiseOptions(steps=10 ** 6, max_minutes=0.05))
    assert unbounded.phases["train"] > 3.0 >= bounded.phases["train"] - bounded.train_floor
    assert bounded.phases["train"] <= max(3.0, bounded.train_floor)
    _, report = denoise(volume, DenoiseOptions(steps=10 ** 6, max_minutes=0.05))
    assert report.steps < 10 ** 6  # one step over at most:
    assert report.train_seconds <= max(3.0, bounded.train_floor) + 1.0


def test_a_series_with_a_single_volume_method_is_denoised_volume_by_volume(phantom):
    rng = np.random.default_rng(5)
    frames = np.stack([phantom + rng.normal(0, 0.05, phantom.shape) for _ in range(3)])
    series = Volume(frames.astype(np.float32), Geometry.identity((1.0, 1.0, 3.0)), "MR",
                    dimension=4, frames=(2.0, 0.0))
    options = DenoiseOptions(method="nsn2n", steps=3, seed=2)
    estimated = estimate(series, options)
    single = estimate(Volume(series.array[0], series.geometry, "MR"), options)
    assert estimated.seconds == pytest.approx(3 * single.seconds, rel=0.5)
    seen = []
    result, report = denoise(series, options, progress=seen.append, estimated=estimated)
    assert result.array.shape == series.array.shape and result.dimension == 4
    assert result.frames == series.frames and report.steps == 3 * 3
    alone, _ = denoise(Volume(series.array[1], series.geometry, "MR"), options)
    assert np.array_equal(result.array[1], alone.array)  # as if it were its own file
    first = [p for p in seen if p.phase == "train"][0]
    assert first.remaining > 2 * single.seconds * 0.3  # the volumes still to come count
    with pytest.raises(InputError, match="volume by volume"):
        denoise(series, dataclasses.replace(options, save_model="net.pt"))
    assert method_for(series, DenoiseOptions()).name == "series"  # auto: the series method


def gpu_that_runs_out(monkeypatch, fails):
    """A GPU (as far as the pipeline can tell) on which the first ``fails`` runs end in
    torch's out-of-memory error; returns the (batch, device) of every attempt."""
    import torch

    import nsn2n.pipeline as pipeline

    monkeypatch.setattr(pipeline, "resolve_device",
                        lambda name="auto": torch.device("cpu" if name == "cpu" else "cuda"))
    monkeypatch.setattr(pipeline, "free_device_memory", lambda device: None)
    attempts = []

    def run(config, options):
        assert config.device == options.device  # the methods use the config's
        attempts.append((config.batch, options.device))
        if len(attempts) <= fails:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "result", "report"

    return attempts, run


def test_a_gpu_out_of_memory_is_retried_with_half_the_batch_then_on_the_cpu(monkeypatch):
    from nsn2n.methods.nsn2n.config import NSN2NConfig
    from nsn2n.pipeline import run_within_memory

    config = NSN2NConfig(batch=4, device="cuda")
    attempts, run = gpu_that_runs_out(monkeypatch, fails=1)
    assert run_within_memory(run, config, DenoiseOptions(device="cuda"))[2] == \
        "cuda ran out of memory; trained with batch 2 instead of 4"
    assert attempts == [(4, "cuda"), (2, "cuda")]
    attempts, run = gpu_that_runs_out(monkeypatch, fails=2)
    assert run_within_memory(run, config, DenoiseOptions(device="cuda"))[2] == \
        "cuda ran out of memory; denoised on the CPU"
    assert attempts == [(4, "cuda"), (2, "cuda"), (4, "cpu")]
    attempts, run = gpu_that_runs_out(monkeypatch, fails=3)
    with pytest.raises(RuntimeError, match="out of memory"):
        run_within_memory(run, config, DenoiseOptions(device="cuda"))
    attempts, run = gpu_that_runs_out(monkeypatch, fails=1)  # the CPU: nothing to fall to
    with pytest.raises(RuntimeError, match="out of memory"):
        run_within_memory(run, dataclasses.replace(config, device="cpu"),
                          DenoiseOptions(device="cpu"))
    assert attempts == [(4, "cpu")]


def test_other_errors_are_not_retried_and_the_report_says_what_was_done(monkeypatch, phantom):
    import torch

    import nsn2n.pipeline as pipeline
    from nsn2n.methods import REGISTRY
    from nsn2n.pipeline import run_within_memory

    attempts, _ = gpu_that_runs_out(monkeypatch, fails=0)

    def broken(config, options):
        attempts.append(options.device)
        raise RuntimeError("a bug, not memory")

    with pytest.raises(RuntimeError, match="a bug"):
        run_within_memory(broken, None, DenoiseOptions(device="cuda"))
    assert attempts == ["cuda"]
    method = type(REGISTRY["nsn2n"])
    real = method.denoise

    def out_of_memory_on_the_gpu(self, volume, config, options, *args, **kwargs):
        if config.device != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(self, volume, config, options, *args, **kwargs)

    monkeypatch.setattr(method, "denoise", out_of_memory_on_the_gpu)
    monkeypatch.setattr(pipeline, "validate", lambda options: None)
    volume = Volume(phantom, Geometry.identity(), "MR")
    result, report = denoise(volume, DenoiseOptions(method="nsn2n", steps=4, device="cuda"))
    assert "denoised on the CPU" in report.warning and result.array.shape == phantom.shape


def test_the_estimate_sees_the_modality_found_in_the_data(phantom, monkeypatch):
    from nsn2n.methods.nsn2n.method import NSN2N

    seen = []
    monkeypatch.setattr(NSN2N, "estimate", lambda self, shape, config: (
        seen.append(config) or Estimate({"train": 1.0})))
    estimate(Volume(ct_like(phantom), Geometry.identity()), DenoiseOptions(**FAST))
    assert seen[-1].block_stride == 0  # Hounsfield units: CT, as the run will find
    estimate(Volume((phantom * 1000).astype(np.float32), Geometry.identity()),
             DenoiseOptions(**FAST))
    assert seen[-1].block_stride > 0
