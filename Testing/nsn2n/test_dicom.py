"""DICOM out: a derived series of the same patient and study, checked with pydicom (an
independent reader) and read back with SimpleITK."""

import numpy as np
import pytest
import SimpleITK as sitk

from nsn2n.cli import EXIT_BAD_INPUT, EXIT_OK, main
from nsn2n.dicom import pixel_tags, series_tags, source_tags, write_derived_series
from nsn2n.volume import read_volume

pydicom = pytest.importorskip("pydicom")

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SOURCE = {"0008|0016": CT_STORAGE, "0008|0060": "CT", "0010|0010": "Doe^Jane",
          "0010|0020": "P123", "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
          "0020|000e": "1.2.826.0.1.3680043.2.1125.2", "0008|103e": "Head 2mm",
          "0020|0011": "3", "0008|0050": "ACC42", "0020|0052": "1.2.826.0.1.3680043.2.1125.3"}


def write_source_series(folder, array, spacing=(0.5, 0.6, 2.0), origin=(-10.0, 20.0, 5.0)):
    folder.mkdir()
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        piece = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for key, value in {**SOURCE, "0008|0018": f"1.2.826.0.1.3680043.2.1125.9.{k}",
                           "0020|0013": str(k + 1), "0020|0037": "1\\0\\0\\0\\1\\0",
                           "0020|0032": "\\".join(map(str, position))}.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k}.dcm"))
        writer.Execute(piece)
    return folder


@pytest.fixture
def ct_series(tmp_path, phantom):
    rng = np.random.default_rng(0)
    hu = np.rint(phantom[:6] * 1200 - 1000 + rng.normal(0, 30, phantom[:6].shape))
    hu = hu.astype(np.int16)
    return write_source_series(tmp_path / "source", hu), hu


def datasets(folder):
    return sorted((pydicom.dcmread(str(p)) for p in folder.iterdir()),
                  key=lambda d: int(d.InstanceNumber))


def test_a_dicom_series_in_gives_a_derived_series_of_the_same_patient_and_study(ct_series,
                                                                               tmp_path):
    source, hu = ct_series
    out = tmp_path / "denoised"
    code = main(["denoise", str(source), str(out), "--steps", "3", "--device", "cpu",
                 "--progress", "none"])
    assert code == EXIT_OK
    files = datasets(out)
    assert len(files) == hu.shape[0]
    originals = datasets(source)
    series_uids = {d.SeriesInstanceUID for d in files}
    assert len(series_uids) == 1 and series_uids != {SOURCE["0020|000e"]}
    sop_uids = [d.SOPInstanceUID for d in files]
    assert len(set(sop_uids)) == len(files)
    assert not set(sop_uids) & {d.SOPInstanceUID for d in originals}
    for d in files:
        assert str(d.PatientName) == "Doe^Jane" and d.PatientID == "P123"
        assert d.StudyInstanceUID == SOURCE["0020|000d"]
        assert d.FrameOfReferenceUID == SOURCE["0020|0052"]
        assert d.AccessionNumber == "ACC42" and d.Modality == "CT"
        assert d.SOPClassUID == CT_STORAGE  # a CT image, not a secondary capture
        assert list(d.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert d.SeriesDescription == "Head 2mm denoised nsn2n balanced"
        assert "NSN2NDenoise" in d.DerivationDescription and "3 training steps" in \
            d.DerivationDescription
        assert int(d.SeriesNumber) == 1003
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
    for before, after in zip(originals, files):
        np.testing.assert_allclose([float(v) for v in after.ImagePositionPatient],
                                   [float(v) for v in before.ImagePositionPatient], atol=1e-4)
    # Read back as a volume: same geometry and pixel type, denoised voxels.
    back, first = read_volume(out), read_volume(source)
    assert back.array.dtype == np.int16 and back.array.shape == hu.shape
    np.testing.assert_allclose(back.geometry.spacing, first.geometry.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.geometry.origin, first.geometry.origin, atol=1e-4)
    np.testing.assert_allclose(back.geometry.direction, first.geometry.direction, atol=1e-6)
    assert not np.array_equal(back.array, hu) and back.modality == "CT"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".nsn2n-")]


def test_float_voxels_are_stored_as_16_bits_with_a_rescale_that_holds_their_range(tmp_path):
    source = write_source_series(tmp_path / "source",
                                 np.arange(3 * 8 * 9, dtype=np.int16).reshape(3, 8, 9))
    rng = np.random.default_rng(1)
    values = rng.uniform(-3.5, 1234.25, (3, 8, 9)).astype(np.float32)
    volume = read_volume(source).with_array(values)
    folder = write_derived_series(volume, tmp_path / "out", source_tags(source), "d", "x")
    d = datasets(folder)[0]
    assert (d.BitsAllocated, d.PixelRepresentation) == (16, 0)
    slope = float(d.RescaleSlope)
    assert slope == pytest.approx((values.max() - values.min()) / 65535, rel=1e-6)
    back = read_volume(folder).array
    assert np.abs(back - values).max() <= slope  # rounding to the nearest stored value


def test_series_tags_are_new_where_they_must_be_and_fit_their_value_representation():
    first = series_tags(dict(SOURCE, **{"0008|103e": "x" * 60}), "denoised nsn2n best", "y" * 2000)
    second = series_tags(SOURCE, "d", "z")
    assert first["0020|000e"] != second["0020|000e"] and first["0020|000e"].startswith("2.25.")
    assert len(first["0020|000e"]) <= 64  # UI: at most 64 characters
    assert len(first["0008|103e"]) == 64 and len(first["0008|2111"]) == 1024
    assert series_tags({}, "d", "x")["0020|0011"] == "1000"  # no source number
    assert "0020|000e" not in {k for k, v in SOURCE.items() if v == first["0020|000e"]}
    assert pixel_tags(np.zeros(3, np.int16)) == {}
    assert pixel_tags(np.full(3, 2.0, np.float32))["0028|1053"] == "1"  # constant: slope 1


@pytest.mark.parametrize("case, message", [
    ("nifti input", "needs a DICOM series folder as input"),
    ("not empty", "is not empty"),
    ("same folder", "input folder"),
])
def test_dicom_output_refusals_are_one_line_and_write_nothing(ct_series, tmp_path, capsys,
                                                               case, message):
    source, hu = ct_series
    target = tmp_path / "out"
    if case == "nifti input":
        nifti = tmp_path / "ct.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(hu), str(nifti))
        source = nifti
    elif case == "not empty":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    else:
        target = source
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["denoise", str(source), str(target), "--steps", "2", "--device", "cpu",
                 "--progress", "none"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
