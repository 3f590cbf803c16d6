"""Benchmark volumes built deterministically offline, each with its exact clean reference.

* MRI: the MNI ICBM152 2009a T1 template shipped inside nilearn, a 48-slice axial slab,
  Rician noise at a fraction of the clean maximum (docs/benchmarks.md, "Data").
* CT: a 3-D head phantom in HU with parenchymal texture, parallel-beam projection,
  Poisson counts, filtered back-projection (docs/benchmarks.md, "Data").  The reference is the
  FBP of the noise-free sinogram, so both carry the same discretisation blur; the noise is
  correlated in-plane and independent across slices.

Needs the ``bench`` extra (nilearn, scikit-image).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from nsn2n.volume import Geometry


@dataclasses.dataclass(frozen=True)
class BenchCase:
    name: str
    noisy: np.ndarray  # (slices, rows, cols), slice axis first
    clean: np.ndarray
    mask: np.ndarray  # head / body
    geometry: Geometry
    modality: str
    sigma: float  # true noise std, for BM4D and the Rician correction of baselines


def mni_template_path() -> Path:
    import nilearn

    path = (Path(nilearn.__file__).parent / "datasets" / "data"
            / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    if not path.exists():
        raise FileNotFoundError(f"nilearn does not ship the MNI template at {path}")
    return path


def mri_clean_slab(slices: int = 48, first: int = 70) -> np.ndarray:
    """48 axial slices of 224x192 from the MNI T1 template, scaled so max = 1."""
    import SimpleITK as sitk

    volume = sitk.GetArrayFromImage(sitk.ReadImage(str(mni_template_path()))).astype(np.float64)
    slab = volume[first:first + slices, 4:228, 2:194]  # (z, y, x) in SimpleITK order
    return (slab / slab.max()).astype(np.float32)


def add_rician(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    real = clean + rng.normal(0.0, sigma, clean.shape)
    imaginary = rng.normal(0.0, sigma, clean.shape)
    return np.sqrt(real ** 2 + imaginary ** 2).astype(np.float32)


def shared_across_slices(values: np.ndarray, kernel: float) -> np.ndarray:
    """``values`` ``(D + 2, H, W)`` filtered along the slices by [a, 1, a] and scaled to
    keep the variance of white noise, ``(D, H, W)``: neighbouring slices then share their
    noise with correlation 2a / (1 + 2a^2), as after through-plane resampling."""
    weights = np.array([kernel, 1.0, kernel]) / np.sqrt(1 + 2 * kernel ** 2)
    return weights[0] * values[:-2] + weights[1] * values[1:-1] + weights[2] * values[2:]


def body_mask(clean: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    """Voxels above a small fraction of the clean range, holes filled slice by slice."""
    from scipy import ndimage

    low, high = float(clean.min()), float(clean.max())
    mask = clean > low + fraction * (high - low)
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def mri_case(level: float, seed: int = 0) -> BenchCase:
    clean = mri_clean_slab()
    sigma = level * float(clean.max())
    noisy = add_rician(clean, sigma, seed)
    return BenchCase(f"MRI {level:.0%}", noisy, clean, body_mask(clean),
                     Geometry.identity((1.0, 1.0, 1.0)), "MR", sigma)


# --- CT -----------------------------------------------------------------------------------

MU_WATER_PER_MM = 0.0192


def head_phantom(slices: int = 48, size: int = 256, seed: int = 7) -> np.ndarray:
    """A head in HU: scalp, skull, brain with grey/white texture, ventricles, lesions,
    calcifications and vessels; structures drift slowly along z (2 mm slices)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    z = np.linspace(-1.0, 1.0, slices)[:, None, None]
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j][:, None]
    shrink = np.sqrt(np.clip(1.0 - 0.35 * z ** 2, 0.2, 1.0))
    outer = (xx / (0.80 * shrink)) ** 2 + (yy / (0.92 * shrink)) ** 2
    skull_in = (xx / (0.74 * shrink)) ** 2 + (yy / (0.86 * shrink)) ** 2
    brain_in = (xx / (0.69 * shrink)) ** 2 + (yy / (0.81 * shrink)) ** 2
    hu = np.full((slices, size, size), -1000.0, dtype=np.float64)
    hu[outer <= 1] = 40.0
    hu[skull_in <= 1] = 900.0
    brain = brain_in <= 1
    # Multi-scale parenchymal texture, about 18 HU std in all (the recipe asks for 15-25 HU:
    # without it diffusion and NLM look unrealistically good on a cartoon), smoother along z
    # at coarse scales so neighbouring slices share it.
    texture = np.zeros_like(hu)
    for scale, amplitude in ((12.0, 13.0), (5.0, 10.0), (2.0, 7.0)):
        field = ndimage.gaussian_filter(rng.standard_normal(hu.shape),
                                        (scale / 4.0, scale, scale))
        texture += amplitude * field / (field.std() + 1e-9)
    grey_white = ndimage.gaussian_filter(rng.standard_normal(hu.shape), (1.5, 6, 6))
    tissue = np.where(grey_white > 0, 38.0, 28.0) + texture
    hu = np.where(brain, tissue, hu)
    ventricles = ((xx - 0.12) / 0.10) ** 2 + (yy / (0.28 * (1 - z ** 2 + 0.05))) ** 2 <= 1
    ventricles |= ((xx + 0.12) / 0.10) ** 2 + (yy / (0.28 * (1 - z ** 2 + 0.05))) ** 2 <= 1
    hu[ventricles & brain] = 8.0
    for _ in range(6):  # low-contrast lesions, +10 HU, a few slices thick
        cz, cy, cx = rng.uniform(-0.6, 0.6), rng.uniform(-0.5, 0.5), rng.uniform(-0.45, 0.45)
        r = rng.uniform(0.04, 0.09)
        lesion = ((xx - cx) ** 2 + (yy - cy) ** 2 + ((z - cz) * 0.5) ** 2) <= r ** 2
        hu[lesion & brain] += 10.0
    for _ in range(5):  # calcifications
        cz, cy, cx = rng.uniform(-0.7, 0.7), rng.uniform(-0.5, 0.5), rng.uniform(-0.45, 0.45)
        calc = ((xx - cx) ** 2 + (yy - cy) ** 2 + ((z - cz) * 0.3) ** 2) <= 0.015 ** 2
        hu[calc & brain] = 200.0
    for _ in range(4):  # vessels running obliquely through slices
        cy, cx = rng.uniform(-0.5, 0.5), rng.uniform(-0.45, 0.45)
        dy, dx = rng.uniform(-0.3, 0.3, 2)
        vessel = ((xx - cx - dx * z) ** 2 + (yy - cy - dy * z) ** 2) <= 0.012 ** 2
        hu[vessel & brain] = 60.0
    return hu.astype(np.float32)


def _fbp_slices(hu: np.ndarray, photons: Optional[float], pixel_mm: float,
                rng: np.random.Generator) -> np.ndarray:
    from skimage.transform import iradon, radon

    angles = np.linspace(0.0, 180.0, 360, endpoint=False)
    result = np.empty_like(hu)
    for k, slice_hu in enumerate(hu):
        mu = np.clip(MU_WATER_PER_MM * (1.0 + slice_hu / 1000.0), 0, None) * pixel_mm
        sinogram = radon(mu, theta=angles, circle=True)
        if photons is not None:
            counts = np.maximum(rng.poisson(photons * np.exp(-sinogram)), 1)
            sinogram = -np.log(counts / photons)
        mu_hat = iradon(sinogram, theta=angles, filter_name="shepp-logan", circle=True)
        result[k] = 1000.0 * (mu_hat / pixel_mm / MU_WATER_PER_MM - 1.0)
    return result


def ct_case(photons: float, seed: int = 0, slices: int = 48) -> BenchCase:
    pixel_mm = 0.8
    phantom = head_phantom(slices)
    clean = _fbp_slices(phantom, None, pixel_mm, np.random.default_rng(0))
    noisy = _fbp_slices(phantom, photons, pixel_mm, np.random.default_rng(seed))
    inside = np.hypot(*np.mgrid[-1:1:clean.shape[1] * 1j, -1:1:clean.shape[2] * 1j]) < 0.98
    noise = (noisy - clean)[:, inside]
    return BenchCase(f"CT {photons:.0e}", noisy, clean, body_mask(clean, 0.3),
                     Geometry.identity((pixel_mm, pixel_mm, 2.0)), "CT", float(noise.std()))


def cases(names: Tuple[str, ...] = ("mri5", "mri10", "ct1e4", "ct5e3")):
    # mri1 and ct1e6 are nearly clean acquisitions: the "never worse" check (--low-noise).
    builders = {"mri5": lambda: mri_case(0.05), "mri10": lambda: mri_case(0.10),
                "ct1e4": lambda: ct_case(1e4), "ct5e3": lambda: ct_case(5e3),
                "mri1": lambda: mri_case(0.01), "ct1e6": lambda: ct_case(1e6)}
    unknown = sorted(set(names) - set(builders))
    if unknown:
        raise SystemExit(f"unknown benchmark case(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(builders)}")
    for name in names:
        yield name, builders[name]()


def write_sample(path, level: float = 0.05, seed: int = 2024) -> Path:
    """The bundled sample: 24 axial slices of the MNI T1 template with Rician noise, int16.

    Deliberately not the benchmark slab (other slices, other seed), so the sample never
    doubles as a tuning target.
    """
    import SimpleITK as sitk

    clean = mri_clean_slab(slices=24, first=46)[:, 16:208, 16:176]
    noisy = add_rician(clean, level, seed) * 1000.0
    image = sitk.GetImageFromArray(np.rint(noisy).astype(np.int16))
    image.SetSpacing((1.0, 1.0, 1.0))
    image.SetOrigin((-80.0, -112.0, -32.0))
    sitk.WriteImage(image, str(path), useCompression=True)
    return Path(path)
