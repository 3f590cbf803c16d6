"""The engine on a CUDA GPU: skipped where there is none (CI, most desks).

Run them where there is one: ``python -m pytest Testing/gpu``.  They need no SimpleITK,
so a machine with only torch, numpy, scipy and pytest runs them from a checkout with
``PYTHONPATH=NSN2NDenoise:.``.
"""

import dataclasses
import threading

import numpy as np
import pytest
import torch

from nsn2n.errors import Cancelled
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.volume import Geometry, Volume
from Testing.helpers import changing_anatomy

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

GEOMETRY = Geometry((0.9, 0.9, 3.0), (10.0, -20.0, 30.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))


def mri(seed=0):
    clean, noisy = changing_anatomy(depth=10, size=64, sigma=0.05, seed=seed)
    return clean, Volume(noisy.astype(np.float32), GEOMETRY, "MR")


def error(array, clean):
    return float(np.sqrt(np.mean((array.astype(np.float64) - clean) ** 2)))


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "auto"])
def test_nsn2n_runs_on_the_gpu_and_keeps_shape_type_and_geometry(device):
    clean, volume = mri()
    result, report = denoise(volume, DenoiseOptions(preset="fast", steps=30, device=device,
                                                    bias_correction="off"))
    # (30 steps on this phantom: the method-noise check may warn, as it does on the CPU)
    assert report.device.startswith("cuda") and "memory" not in (report.warning or "")
    assert report.precision == "bf16"  # every CUDA GPU since Ampere runs it natively
    assert result.array.shape == volume.array.shape and result.array.dtype == np.float32
    assert result.geometry == GEOMETRY and np.isfinite(result.array).all()
    assert error(result.array, clean) < error(volume.array, clean)


def test_the_gpu_denoises_as_well_as_the_cpu():
    clean, volume = mri(seed=1)
    options = DenoiseOptions(preset="fast", steps=150, seed=2, bias_correction="off")
    on_gpu, _ = denoise(volume, dataclasses.replace(options, device="cuda"))
    on_cpu, _ = denoise(volume, dataclasses.replace(options, device="cpu", precision="fp32"))
    before = error(volume.array, clean)
    assert error(on_gpu.array, clean) < 0.8 * before
    assert error(on_gpu.array, clean) < 1.1 * error(on_cpu.array, clean)


def test_the_same_seed_gives_the_same_output_on_the_gpu():
    _, volume = mri(seed=3)
    options = DenoiseOptions(preset="fast", steps=40, seed=5, device="cuda")
    first, _ = denoise(volume, options)
    second, _ = denoise(volume, options)
    np.testing.assert_array_equal(first.array, second.array)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_full_precision_and_float16_with_loss_scaling_train_on_the_gpu(precision):
    clean, volume = mri(seed=4)
    result, report = denoise(volume, DenoiseOptions(preset="fast", steps=60, device="cuda",
                                                    precision=precision))
    assert report.precision == precision and report.recoveries == 0
    assert np.isfinite(result.array).all()
    assert error(result.array, clean) < error(volume.array, clean)


def test_a_series_and_an_ultrasound_cine_run_on_the_gpu():
    rng = np.random.default_rng(0)
    _, volume = mri(seed=5)
    series = Volume(np.stack([volume.array + rng.normal(0, 0.05, volume.array.shape)
                              .astype(np.float32) for _ in range(4)]),
                    GEOMETRY, "MR", dimension=4)
    result, report = denoise(series, DenoiseOptions(preset="fast", steps=20, device="cuda"))
    assert report.method == "series" and report.device.startswith("cuda")
    assert result.array.shape == series.array.shape and np.isfinite(result.array).all()
    cine = Volume(rng.gamma(4.0, 30.0, (3, 64, 80)).clip(0, 255).astype(np.uint8),
                  Geometry.identity((0.2, 0.2, 1.0)), "US")
    result, report = denoise(cine, DenoiseOptions(method="speckle2self", steps=5,
                                                  device="cuda"))
    assert report.device.startswith("cuda") and result.array.dtype == np.uint8


def test_a_real_out_of_memory_falls_back_and_says_so():
    """The GPU given too little memory for training: the run ends on the CPU, reported."""
    _, volume = mri(seed=6)
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(2 ** 20 / total)  # 1 MiB
    try:
        result, report = denoise(volume, DenoiseOptions(preset="fast", steps=10,
                                                        device="cuda"))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert "ran out of memory" in report.warning and report.device == "cpu"
    assert np.isfinite(result.array).all() and result.array.shape == volume.array.shape


def test_a_cancel_on_the_gpu_stops_the_run_and_frees_its_memory():
    _, volume = mri(seed=7)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    cancel = threading.Event()

    def progress(p):
        if p.phase == "train" and p.step >= 5:
            cancel.set()

    with pytest.raises(Cancelled):
        denoise(volume, DenoiseOptions(preset="balanced", device="cuda"), progress, cancel)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() - before < 2 ** 20

