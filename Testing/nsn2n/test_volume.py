import gzip
import os
import struct

import numpy as np
import pytest
import SimpleITK as sitk

from nsn2n.errors import InputError, OutputError
from nsn2n.volume import (Geometry, Volume, cast_like, check_output_path, read_volume,
                          require_volume, write_volume)

OBLIQUE = Geometry(
    spacing=(0.7, 0.9, 3.0),
    origin=(-12.5, 30.25, 101.0),
    # a rotation about an oblique axis: not a permutation, not the identity
    direction=tuple(np.array(sitk.VersorTransform((0.3, 0.5, 0.8), 0.6).GetMatrix()).tolist()),
)


def make_volume(dtype=np.int16, shape=(5, 6, 7)):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        array = rng.normal(0, 100, shape).astype(dtype)
    else:
        array = rng.integers(-1000 if np.dtype(dtype).kind == "i" else 0, 1000, shape).astype(dtype)
    return Volume(array, OBLIQUE)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_round_trip_keeps_voxels_geometry_and_type(tmp_path, suffix, dtype):
    volume = make_volume(dtype)
    path = write_volume(volume, tmp_path / f"out{suffix}")
    back = read_volume(path)
    assert back.array.dtype == volume.array.dtype
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.geometry.spacing, OBLIQUE.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.geometry.origin, OBLIQUE.origin, atol=1e-4)
    np.testing.assert_allclose(back.geometry.direction, OBLIQUE.direction, atol=1e-5)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".nsn2n-")]
    assert not leftovers


def test_dicom_series_folder_is_read_with_modality(tmp_path):
    array = np.random.default_rng(0).integers(-1000, 1000, (4, 8, 9)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.5, 2.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(array.shape[0]):
        piece = image[:, :, k]
        for key, value in {"0008|0060": "CT", "0020|000e": "1.2.3.4.5",
                           "0020|0013": str(k + 1), "0020|0032": f"0\\0\\{2.0 * k}",
                           "0020|0037": "1\\0\\0\\0\\1\\0", "0028|0030": "0.5\\0.5"}.items():
            piece.SetMetaData(key, value)
        writer.SetFileName(str(tmp_path / f"slice{k}.dcm"))
        writer.Execute(piece)
    volume = read_volume(tmp_path)
    assert volume.modality == "CT"
    assert volume.array.shape == (4, 8, 9)
    np.testing.assert_array_equal(volume.array, array)
    assert volume.geometry.spacing[2] == pytest.approx(2.0)


def test_cast_rounds_and_clips_integers():
    out = cast_like(np.array([-5.6, 0.4, 0.6, 300.2]), np.uint8)
    assert out.dtype == np.uint8 and out.tolist() == [0, 0, 1, 255]
    assert cast_like(np.array([1.25]), np.float32).dtype == np.float32


def write_raw(path, array, dtype=None):
    image = sitk.GetImageFromArray(array)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"),
    ("garbage", "cannot read"),
    ("constant", "constant"),
    ("nan_nrrd", "NaN"),
    ("nan_nifti", "NaN"),
    ("inf_nifti_gz", "NaN or infinite"),
    ("vector", "components"),
])
def test_bad_inputs_raise_one_line_errors(tmp_path, case, message):
    data = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    if case == "missing":
        path = tmp_path / "nope.nrrd"
    elif case == "garbage":
        path = tmp_path / "bad.nrrd"
        path.write_bytes(b"this is not an image")
    elif case == "constant":
        path = write_raw(tmp_path / "a.nrrd", np.ones((4, 5, 6), np.int16))
    elif case in ("nan_nrrd", "nan_nifti"):
        data[1, 2, 3] = np.nan
        path = write_raw(tmp_path / ("a.nrrd" if case == "nan_nrrd" else "a.nii"), data)
    elif case == "inf_nifti_gz":
        data[0, 0, 0] = np.inf
        path = write_raw(tmp_path / "a.nii.gz", data)
    elif case == "vector":
        path = tmp_path / "vector.nrrd"
        sitk.WriteImage(sitk.GetImageFromArray(data[..., None].repeat(2, -1), isVector=True),
                        str(path))
    with pytest.raises(InputError) as info:
        read_volume(path)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_output_checks(tmp_path):
    source = tmp_path / "in.nrrd"
    source.write_bytes(b"x")
    with pytest.raises(InputError, match="same file"):
        check_output_path(source, source)
    with pytest.raises(InputError, match="unsupported output"):
        check_output_path(tmp_path / "out.png")
    with pytest.raises(InputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.nrrd")


def test_unwritable_output_folder_is_rejected(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("root ignores permissions; Testing/engine/test_cli.py covers it")
        with pytest.raises(InputError, match="not writable"):
            check_output_path(locked / "out.nrrd")
    finally:
        locked.chmod(0o700)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import SimpleITK

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(SimpleITK, "WriteImage", boom)
    with pytest.raises(RuntimeError):
        write_volume(make_volume(), tmp_path / "out.nrrd")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_2d_image_round_trip_stays_2d_with_its_geometry(tmp_path, suffix):
    image = sitk.GetImageFromArray(np.arange(35, dtype=np.uint16).reshape(5, 7))
    image.SetSpacing((0.3, 0.45))
    image.SetOrigin((4.0, -2.5))
    image.SetDirection((0.0, 1.0, 1.0, 0.0))
    sitk.WriteImage(image, str(tmp_path / f"in{suffix}"))
    volume = read_volume(tmp_path / f"in{suffix}")
    assert volume.dimension == 2 and volume.array.shape == (1, 5, 7)
    back = sitk.ReadImage(str(write_volume(volume, tmp_path / f"out{suffix}")))
    assert back.GetDimension() == 2 and back.GetSize() == (7, 5)
    np.testing.assert_allclose(back.GetSpacing(), (0.3, 0.45), rtol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), (4.0, -2.5), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), (0.0, 1.0, 1.0, 0.0), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), volume.array[0])


def test_rgb_is_read_with_its_components_and_refused_by_slice_methods(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (4, 5, 6, 3)).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(data, isVector=True), str(tmp_path / "rgb.nrrd"))
    volume = read_volume(tmp_path / "rgb.nrrd")
    assert volume.components == 3 and volume.array.shape == (4, 5, 6, 3)
    with pytest.raises(InputError, match="components"):
        require_volume(volume)


@pytest.mark.parametrize("shape", [(1, 5, 6), (4, 1, 6)])
def test_slice_methods_refuse_images_and_too_few_slices(shape):
    volume = Volume(np.random.default_rng(0).random(shape), OBLIQUE)
    with pytest.raises(InputError, match="2-D|at least 3"):
        require_volume(volume)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_series_of_volumes_is_read_whole_and_written_back_exactly(tmp_path, suffix):
    frames = [np.random.default_rng(t).integers(0, 900, (4, 5, 6)).astype(np.int16)
              for t in range(3)]
    images = [sitk.GetImageFromArray(frame) for frame in frames]
    for image in images:
        image.SetSpacing((0.9, 1.1, 3.0))
        image.SetOrigin((10.0, -20.0, 5.5))
    series = sitk.JoinSeries(images, 7.5, 2.5)  # origin and spacing of the time axis
    path = tmp_path / f"series{suffix}"
    sitk.WriteImage(series, str(path))
    volume = read_volume(path)
    assert volume.dimension == 4 and volume.array.shape == (3, 4, 5, 6)
    assert np.array_equal(volume.array, np.stack(frames))
    assert volume.geometry.spacing == pytest.approx((0.9, 1.1, 3.0))
    assert volume.frames == pytest.approx((2.5, 7.5))
    out = tmp_path / f"out{suffix}"
    write_volume(volume.with_array(volume.array[::-1].copy()), out)
    back = sitk.ReadImage(str(out))
    assert back.GetDimension() == 4 and back.GetPixelID() == series.GetPixelID()
    assert back.GetSpacing() == pytest.approx(series.GetSpacing())
    assert back.GetOrigin() == pytest.approx(series.GetOrigin())
    assert np.array_equal(sitk.GetArrayFromImage(back), np.stack(frames[::-1]))


def test_slice_methods_refuse_a_series_with_the_way_out():
    volume = Volume(np.ones((3, 4, 5, 6), np.float32), Geometry.identity(), dimension=4)
    with pytest.raises(InputError, match="--method series"):
        require_volume(volume)


def test_write_atomically_renames_a_readable_file_into_place_and_leaves_nothing_on_failure(
        tmp_path):
    import stat

    from nsn2n.volume import write_atomically

    target = write_atomically(tmp_path / "a.json", lambda t: open(t, "w").write("{}"))
    assert target.read_text() == "{}" and stat.S_IMODE(target.stat().st_mode) == 0o644

    def broken(temporary):
        open(temporary, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OutputError, match="cannot write .*b.json: disk full"):
        write_atomically(tmp_path / "b.json", broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
