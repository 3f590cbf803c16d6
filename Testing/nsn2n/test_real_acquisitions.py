"""The product on real scans (``Testing/data/realdata``): never further from the anatomy
than the input, and the noise it measures near the noise the repeats show."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from nsn2n.errors import InputError
from nsn2n.methods.nsn2n.method import rician_sigma_for
from nsn2n.metrics import psnr
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.volume import Volume, read_volume

DATA = Path(__file__).resolve().parents[1] / "data" / "realdata"
# (input, reference, noise sigma from the input and an independent repeat: 1.4826 MAD of
# their difference / sqrt(2) in the head, on the full volumes; shared/realdata/README.md)
SETS = [("asl_vol050.nii.gz", "asl_vol050_reference.nii.gz", 8.39),
        ("dwi_b0_r1_crop.nii.gz", "dwi_b0_r1_reference_crop.nii.gz", 19.92)]


def head(reference):
    from scipy import ndimage

    mask = ndimage.binary_opening(reference > 0.15 * np.percentile(reference, 99.9))
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


@pytest.mark.parametrize("name, reference_name, pair_sigma", SETS)
def test_output_is_not_further_from_the_anatomy_than_the_input(name, reference_name,
                                                               pair_sigma):
    volume = read_volume(DATA / name)
    reference = read_volume(DATA / reference_name).array.astype(np.float64)
    result, report = denoise(volume, DenoiseOptions(preset="fast", steps=40, seed=0))
    mask, value_range = head(reference), float(reference.max())
    before = psnr(volume.array, reference, mask, value_range)
    after = psnr(result.array, reference, mask, value_range)
    assert after >= before, (before, after)
    assert report.noise_sigma == pytest.approx(pair_sigma, rel=0.25)
    assert report.warning is None


@pytest.mark.parametrize("name, reference_name, pair_sigma", SETS)
def test_a_rim_of_air_left_by_a_mask_is_not_taken_for_rayleigh_noise(name, reference_name,
                                                                     pair_sigma):
    """A head mask two voxels too generous leaves a rim of air and dark tissue whose
    histogram peak looks Rayleigh, at 2-17x the noise; the Rician correction with it
    darkened the anatomy."""
    from scipy import ndimage

    volume = read_volume(DATA / name)
    reference = read_volume(DATA / reference_name).array
    for rim in (1, 2, 4):
        kept = ndimage.binary_dilation(head(reference), iterations=rim)
        masked = np.where(kept, volume.array, 0).astype(volume.array.dtype)
        assert rician_sigma_for(masked, "MR", None) is None


def test_thick_slices_without_air_are_left_as_they_are_unless_the_noise_is_given():
    """The real 6 mm ASL volume with its background masked: its noise estimate has no air
    to confirm it (it reads 4.7x the repeats' noise; denoised with it, the output was
    2.1-3.2 dB further from the reference than the input), so the volume is returned as
    it is, with a warning; with the noise level given it is denoised."""
    from scipy import ndimage

    volume = read_volume(DATA / "asl_vol050.nii.gz")
    reference = read_volume(DATA / "asl_vol050_reference.nii.gz").array
    kept = ndimage.binary_dilation(head(reference), iterations=2)
    masked = Volume(np.where(kept, volume.array, 0).astype(volume.array.dtype),
                    volume.geometry)
    options = DenoiseOptions(preset="fast", steps=40, seed=0)
    result, report = denoise(masked, options)
    assert np.array_equal(result.array, masked.array) and result.array.dtype == np.int16
    assert report.steps == 0 and report.air_sigma is None and not report.bias_correction
    assert report.warning.startswith("left as it is") and "2.0x thicker" in report.warning
    with pytest.raises(InputError, match="no network was trained"):
        denoise(masked, dataclasses.replace(options, save_model="net.pt"))
    # the level known from a repeat: denoised, no warning, not further from the anatomy
    given = dataclasses.replace(options, noise_sigma=pair_sigma_of("asl_vol050.nii.gz"))
    result, report = denoise(masked, given)
    assert report.steps > 0 and report.warning is None
    mask, value_range = head(reference), float(reference.max())
    assert (psnr(result.array, reference, mask, value_range)
            >= psnr(volume.array, reference, mask, value_range))
    _, report = denoise(volume, options)  # the same volume with its air: denoised
    assert report.steps > 0 and report.warning is None
    assert report.air_sigma == pytest.approx(pair_sigma_of("asl_vol050.nii.gz"), rel=0.2)


def pair_sigma_of(name):
    return next(sigma for file, _, sigma in SETS if file == name)
