"""The product on real scans (``Testing/data/realdata``): never further from the anatomy
than the input, and the noise it measures near the noise the repeats show."""

from pathlib import Path

import numpy as np
import pytest

from nsn2n.metrics import psnr
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.volume import read_volume

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
