"""Properties of volume I/O and of a run's geometry, over shapes, pixel types, spacings
and directions (rotations and reflections) drawn by hypothesis."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nsn2n.files import denoise_file
from nsn2n.options import DenoiseOptions
from nsn2n.volume import Geometry, Volume, read_volume, write_volume

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32, np.float64]
SUFFIXES = [".nrrd", ".nhdr", ".mha", ".mhd", ".nii", ".nii.gz"]


@st.composite
def geometries(draw):
    spacing = tuple(draw(st.floats(0.05, 20.0)) for _ in range(3))
    origin = tuple(draw(st.floats(-500.0, 500.0)) for _ in range(3))
    # a rotation from a unit quaternion; half of them mirrored (a left-handed frame)
    q = np.array([draw(st.floats(-1.0, 1.0)) for _ in range(4)])
    if np.linalg.norm(q) < 0.1:
        q = np.array([1.0, 0.0, 0.0, 0.0])
    w, x, y, z = q / np.linalg.norm(q)
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    if draw(st.booleans()):
        rotation = rotation @ np.diag([1.0, 1.0, -1.0])
    return Geometry(spacing, origin, tuple(rotation.ravel().tolist()))


def voxels(shape, dtype, seed):
    """Values over the type's range (or a wide float range): never constant, never
    label-like, so that every volume here is one the engine accepts."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(0, 1000, shape).astype(dtype)
    info = np.iinfo(dtype)
    array = rng.integers(info.min, info.max, shape, endpoint=True, dtype=np.int64)
    array.flat[:2] = (info.min, info.max)
    return array.astype(dtype)


def same_geometry(back: Geometry, written: Geometry, suffix: str) -> None:
    if suffix in (".nii", ".nii.gz"):  # NIfTI stores float32 and a quaternion
        np.testing.assert_allclose(back.spacing, written.spacing, rtol=1e-6)
        np.testing.assert_allclose(back.origin, written.origin, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(back.direction, written.direction, atol=1e-6)
    else:
        np.testing.assert_allclose(back.spacing, written.spacing, rtol=1e-12)
        np.testing.assert_allclose(back.origin, written.origin, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(back.direction, written.direction, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(1, 5), st.integers(2, 7), st.integers(2, 7)),
       dtype=st.sampled_from(DTYPES), suffix=st.sampled_from(SUFFIXES),
       geometry=geometries(), seed=st.integers(0, 2 ** 16))
def test_a_volume_survives_a_write_and_a_read(tmp_path, shape, dtype, suffix, geometry,
                                              seed):
    volume = Volume(voxels(shape, dtype, seed), geometry)
    path = write_volume(volume, tmp_path / f"v{seed}{suffix}")
    back = read_volume(path)
    assert back.array.dtype == volume.array.dtype and back.dimension == 3
    np.testing.assert_array_equal(back.array, volume.array)
    same_geometry(back.geometry, geometry, suffix)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.tuples(st.integers(3, 6), st.integers(8, 16), st.integers(8, 16)),
       dtype=st.sampled_from([np.uint8, np.int16, np.int32, np.float32, np.float64]),
       suffix=st.sampled_from([".nrrd", ".mha", ".nii.gz"]),
       geometry=geometries(), seed=st.integers(0, 2 ** 16))
def test_a_denoised_file_has_the_geometry_type_and_shape_of_its_input(
        tmp_path, shape, dtype, suffix, geometry, seed):
    # thin slices on array axis 0 whatever the drawn spacing, so that slices are 8 px+
    geometry = Geometry(tuple(min(s, 1.0) for s in geometry.spacing[:2]) + (3.0,),
                        geometry.origin, geometry.direction)
    source = write_volume(Volume(voxels(shape, dtype, seed), geometry),
                          tmp_path / f"in{seed}{suffix}")
    output = tmp_path / f"out{seed}{suffix}"
    denoise_file(source, output, DenoiseOptions(steps=2, preset="fast", device="cpu"))
    before, after = read_volume(source), read_volume(output)
    assert after.array.shape == before.array.shape
    assert after.array.dtype == before.array.dtype
    # as the input file holds it: exactly, or to the float32 precision NIfTI stores
    same_geometry(after.geometry, before.geometry, suffix)


def test_the_properties_can_fail():
    """The geometry comparison catches a change as small as a file format's rounding."""
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    moved = Geometry((1.0, 1.0, 1.0), (1e-9, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(AssertionError):
        same_geometry(moved, geometry, ".nrrd")
