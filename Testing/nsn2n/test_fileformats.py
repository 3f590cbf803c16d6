import os

import numpy as np
import pytest
import SimpleITK as sitk

from nsn2n.errors import InputError
from nsn2n.fileformats import (check_file, check_nifti_data, format_of_content,
                               format_of_name, native_messages_held, readable_name)
from nsn2n.volume import read_volume


def written(path, array=None):
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) if array is None else array
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


@pytest.mark.parametrize("name, format", [("a.nii", "NIfTI"), ("a.nii.gz", "NIfTI"),
                                          ("a.nrrd", "NRRD"), ("a.nhdr", "NRRD"),
                                          ("a.mha", "MetaImage"), ("a.mhd", "MetaImage")])
def test_the_content_says_the_format_the_name_says(tmp_path, name, format):
    path = written(tmp_path / name)
    assert format_of_name(path) == format_of_content(path) == format
    check_file(path)


def test_a_dicom_file_is_known_by_its_preamble_and_needs_no_extension(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 300)
    assert format_of_content(path) == "DICOM"
    check_file(path)
    check_file(path.rename(tmp_path / "IM00001"))  # as scanners export them


@pytest.mark.parametrize("real, named, hint", [("a.nii.gz", "a.nrrd", ".nii.gz"),
                                               ("a.nrrd", "a.mha", ".nrrd"),
                                               ("a.mha", "a", ".mha")])
def test_a_name_that_disagrees_with_the_content_is_one_line(tmp_path, real, named, hint):
    path = written(tmp_path / real).rename(tmp_path / named)
    with pytest.raises(InputError, match=f"rename it to end in {hint}$"):
        check_file(path)


def test_an_empty_file_and_unknown_content(tmp_path):
    (tmp_path / "e.nrrd").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        check_file(tmp_path / "e.nrrd")
    (tmp_path / "n.nrrd").write_bytes(b"hello, not an image")
    assert format_of_content(tmp_path / "n.nrrd") is None
    check_file(tmp_path / "n.nrrd")  # left to SimpleITK, which says it cannot read it


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_a_truncated_nifti_is_refused_where_simpleitk_would_zero_fill(tmp_path, suffix,
                                                                       dtype):
    path = written(tmp_path / f"a{suffix}", np.ones((4, 5, 6), dtype))
    check_nifti_data(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 30])
    with pytest.raises(InputError, match="truncated"):
        check_nifti_data(path)


def test_nan_and_inf_in_a_nifti_are_counted(tmp_path):
    array = np.ones((4, 5, 6), np.float32)
    array[0, 0, :3] = (np.nan, np.inf, -np.inf)
    with pytest.raises(InputError, match="has 3 NaN or infinite voxels"):
        check_nifti_data(written(tmp_path / "a.nii.gz", array))


def test_what_libraries_print_to_standard_error_is_held(capfd):
    with native_messages_held() as held:
        os.write(2, b"** ERROR: nifti_convert_nhdr2nim: bad dim[0]\n")
    assert held == ["** ERROR: nifti_convert_nhdr2nim: bad dim[0]"]
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


@pytest.mark.parametrize("links", [True, False])
def test_a_compressed_nifti_beside_an_uncompressed_one_gives_its_own_voxels(
        tmp_path, monkeypatch, links):
    # ITK's NIfTI reader takes NAME.nii.gz's voxels from NAME.nii when both exist
    plain, packed = np.arange(24.0).reshape(2, 3, 4), -np.arange(24.0).reshape(2, 3, 4)
    sitk.WriteImage(sitk.GetImageFromArray(plain), str(tmp_path / "scan.nii"))
    sitk.WriteImage(sitk.GetImageFromArray(packed), str(tmp_path / "scan.nii.gz"))
    if not links:  # as on Windows without the symlink privilege: a copy is read
        monkeypatch.setattr(os, "symlink", lambda *a: (_ for _ in ()).throw(OSError()))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr("tempfile.tempdir", None)
    assert np.array_equal(read_volume(tmp_path / "scan.nii.gz").array, packed)
    assert np.array_equal(read_volume(tmp_path / "scan.nii").array, plain)
    assert list((tmp_path / "tmp").iterdir()) == []  # the link or copy is gone
    with readable_name(tmp_path / "scan.nii") as name:  # nothing to work around
        assert name == tmp_path / "scan.nii"
