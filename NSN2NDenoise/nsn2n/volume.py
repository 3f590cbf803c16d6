"""Volume I/O that keeps geometry exactly.

A :class:`Volume` is a numpy array in SimpleITK's index order ``(k, j, i)`` plus the
geometry and pixel type it came with.  Methods never see geometry; this module restores
it on write, so size, spacing, origin, direction and pixel type survive a round trip.

Writes are atomic: the image is written into a temporary folder next to the target and
renamed into place, so a crash or a cancel never leaves a partial output file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Tuple, Union

import numpy as np

from .errors import Cancelled, InputError, OutputError
from .fileformats import (check_file, check_nifti_data, native_messages_held, readable_name,
                          suffix_of)

READ_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
WRITE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
MIN_SLICES = 3
SAME_SPACING = 0.05  # relative difference under which two spacings count as the same

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where the voxels sit in physical space (ITK/LPS convention, x-y-z order)."""

    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]  # 3x3, row-major, as SimpleITK returns it

    @classmethod
    def identity(cls, spacing=(1.0, 1.0, 1.0)) -> "Geometry":
        return cls(tuple(float(s) for s in spacing), (0.0, 0.0, 0.0),
                   (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


@dataclasses.dataclass(frozen=True)
class Volume:
    """Voxels in ``(k, j, i)`` order, their geometry, and what the file said about them."""

    array: np.ndarray  # (k, j, i); (k, j, i, c) for RGB(A) pixels; (t, k, j, i) for a series
    geometry: Geometry
    modality: Optional[str] = None  # "CT", "MR", "US", ... when the file says so
    # 2 for a single 2-D image, stored as one slice (1, j, i); 4 for a series of volumes
    dimension: int = 3
    frames: Tuple[float, float] = (1.0, 0.0)  # a series' fourth axis: spacing, origin

    @property
    def components(self) -> int:
        return 1 if self.array.ndim == 3 or self.dimension == 4 else int(self.array.shape[-1])

    def with_array(self, array: np.ndarray) -> "Volume":
        return dataclasses.replace(self, array=array)


def _sitk():
    # Deferred so that importing the engine stays cheap and side-effect free.
    import SimpleITK as sitk

    return sitk


def read_volume(path) -> Volume:
    """Read a 3-D volume, a 2-D image (gray or RGB) or a 4-D series of volumes from a file
    or a DICOM series folder.

    A 2-D image becomes one slice ``(1, j, i)`` with ``dimension`` 2 and is written back as
    2-D; a 4-D file keeps all its volumes, ``(t, k, j, i)`` with ``dimension`` 4.  Which
    shapes a method accepts is the method's business (``require_volume``); here only what
    no method can use is refused, with a one-line :class:`InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"input is not readable: {path}")
    if path.is_file():
        check_file(path)
    sitk = _sitk()
    modality = None
    try:
        with native_messages_held() as held:
            if path.is_dir():
                image, modality = _read_dicom_series(path)
            else:
                with readable_name(path) as name:
                    reader = sitk.ImageFileReader()
                    reader.SetFileName(str(name))
                    reader.ReadImageInformation()
                    _check_header(reader.GetDimension(), reader.GetSize(),
                                  reader.GetNumberOfComponents(), path)
                    if suffix_of(path) in (".nii", ".nii.gz"):
                        check_nifti_data(path)
                    image = reader.Execute()
                if reader.HasMetaDataKey("0008|0060"):
                    modality = reader.GetMetaData("0008|0060").strip() or None
    except InputError:
        raise
    except RuntimeError as exc:  # SimpleITK reports unreadable files this way
        first = str(exc).strip().splitlines()
        detail = next((line for line in first if "ERROR" in line or "Could not" in line), "")
        raise InputError(f"cannot read {path}: not a supported image file"
                         + (f" ({detail.strip()[:120]})" if detail else "")) from None
    for line in held:
        log.debug("reading %s: %s", path, line)
    _check_header(image.GetDimension(), image.GetSize(),
                  image.GetNumberOfComponentsPerPixel(), path)
    array = sitk.GetArrayFromImage(image)
    dimension = image.GetDimension()
    if dimension == 2:
        array = array[None]
    check_voxels(array, str(path))
    frames = ((image.GetSpacing()[3], image.GetOrigin()[3]) if dimension == 4
              else (1.0, 0.0))
    return Volume(array, _geometry_3d(image, path), modality, dimension, frames)


def _geometry_3d(image, path: Path) -> Geometry:
    """The image's geometry; a 2-D image gets unit spacing, zero origin along a third axis,
    a 4-D series the geometry of its volumes."""
    if image.GetDimension() == 3:
        return Geometry(tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                        tuple(image.GetDirection()))
    if image.GetDimension() == 4:
        direction = np.asarray(image.GetDirection()).reshape(4, 4)
        if not (np.allclose(direction[:3, 3], 0) and np.allclose(direction[3, :3], 0)):
            raise InputError(f"{path} is a 4-D image whose fourth axis is oblique in space; "
                             "a series of volumes is needed")
        return Geometry(tuple(image.GetSpacing()[:3]), tuple(image.GetOrigin()[:3]),
                        tuple(direction[:3, :3].ravel()))
    (a, b, c, d) = image.GetDirection()
    return Geometry(tuple(image.GetSpacing()) + (1.0,), tuple(image.GetOrigin()) + (0.0,),
                    (a, b, 0.0, c, d, 0.0, 0.0, 0.0, 1.0))


def dicom_series_files(folder: Path, warn: bool = True):
    """The files of the DICOM series in ``folder``, in slice order.  Several series in one
    folder: the one with the most files, the usual "the volume" of an export (a scout or
    a dose report may sit beside it), with a warning."""
    sitk = _sitk()
    series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(f"no DICOM series found in folder {folder}")
    files = max((sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), s) for s in series),
                key=len)
    if len(series) > 1 and warn:
        log.warning("%s holds %d DICOM series; using the largest (%d files)", folder,
                    len(series), len(files))
    return files


def _read_dicom_series(folder: Path):
    sitk = _sitk()
    files = dicom_series_files(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    image = reader.Execute()
    modality = None
    if reader.HasMetaDataKey(0, "0008|0060"):
        modality = reader.GetMetaData(0, "0008|0060").strip() or None
    return image, modality


def _check_header(dimension: int, size, components: int, path: Path) -> None:
    if components not in (1, 3, 4):
        raise InputError(f"{path} has {components} components per voxel (a vector image); "
                         "a gray or RGB image is needed")
    if dimension not in (2, 3, 4):
        raise InputError(f"{path} is a {dimension}-D image; a 3-D volume, a 2-D image or a "
                         "4-D series of volumes is needed")
    if dimension == 4 and components != 1:
        raise InputError(f"{path} is a 4-D image of {components} components per voxel; a "
                         "series of gray volumes is needed")


def check_voxels(array: np.ndarray, name: str = "volume") -> None:
    """Reject arrays that no method can denoise: non-numeric, non-finite or constant."""
    if array.ndim not in (3, 4) or array.size == 0 or min(array.shape) == 0:
        raise InputError(f"{name} has shape {array.shape}; a volume or an image is needed")
    if array.dtype.kind not in "iuf":
        raise InputError(f"{name} has voxel type {array.dtype}; a real scalar type is needed")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputError(f"{name} has {bad} NaN or infinite voxels")
    if array.min() == array.max():
        raise InputError(f"{name} is constant ({array.flat[0]}): there is nothing to denoise")
    if array.dtype.kind in "iu" and looks_like_labels(array):
        raise InputError(f"{name} looks like a label map or mask (a few whole numbers in "
                         "flat regions); denoising needs an intensity image")


# A label map: integer voxels, few distinct values, and nearly every voxel equal to its
# neighbour.  Any acquired image, even one with a zero-filled background, has noise
# between neighbours over most of its voxels, and thousands of distinct values.
LABEL_MAX_VALUES = 256
LABEL_FLAT_SHARE = 0.9


def looks_like_labels(array: np.ndarray) -> bool:
    # Rows along array axis 2, a spatial axis in every layout ((k, j, i), (k, j, i, c),
    # (t, k, j, i)); a thousand or so of them are a cheap and fair sample.
    rows = array[::max(1, array.shape[0] // 16), ::max(1, array.shape[1] // 64)]
    if rows.shape[2] < 2 or np.mean(rows[:, :, 1:] == rows[:, :, :-1]) < LABEL_FLAT_SHARE:
        return False
    return len(np.unique(rows)) <= LABEL_MAX_VALUES


def require_volume(volume: Volume, name: str = "volume") -> None:
    """What slice-based methods need: a gray 3-D volume of at least ``MIN_SLICES`` slices."""
    if volume.dimension == 4:
        raise InputError(f"{name} is a series of {volume.array.shape[0]} volumes (4-D); "
                         "denoise it with --method series, or pick one volume")
    if volume.components != 1:
        raise InputError(f"{name} has {volume.components} components per voxel (RGB or "
                         "vector); a scalar (gray) volume is needed")
    shape = volume.array.shape
    if volume.dimension == 2 or sum(1 for s in shape if s > 1) < 3:
        raise InputError(f"{name} is a 2-D image; a volume of at least {MIN_SLICES} slices "
                         "is needed (for 2-D ultrasound use --method speckle2self)")
    if max(shape) < MIN_SLICES:
        raise InputError(f"{name} has shape {shape}; a volume of at least {MIN_SLICES} "
                         "slices is needed")


def resolve_slice_axis(geometry: Geometry, requested: Union[str, int] = "auto",
                       shape: Optional[Tuple[int, ...]] = None) -> int:
    """Array axis (0, 1, 2 of the ``(k, j, i)`` array) that runs across slices.

    By default the axis with the largest spacing: the through-plane axis of a typical
    acquisition, whose neighbouring slices have independent noise.  Spacings within
    :data:`SAME_SPACING` of each other count as equal, and ties (isotropic voxels,
    ultrasound cines stored with unit spacing) go to array axis 0, the file's slice or
    frame order: a real 2 x 2 x 1.994 mm diffusion scan would otherwise be cut along an
    in-plane axis, across which its noise is correlated (0.3 at lag 1).  A single image's
    one slice (when ``shape`` is given) is always its own axis.
    """
    if requested != "auto":
        return int(requested)
    if shape is not None and 1 in shape:
        return list(shape).index(1)
    spacing_by_array_axis = list(reversed(geometry.spacing))  # ITK is (i, j, k)
    largest = max(spacing_by_array_axis)
    return next(axis for axis, s in enumerate(spacing_by_array_axis)
                if s >= largest * (1 - SAME_SPACING))


def cast_like(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast to the input's pixel type: integers are rounded and clipped to the type's range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        rounded = np.rint(array)  # one float copy, clipped in place: bounded peak memory
        np.clip(rounded, info.min, info.max, out=rounded)
        return rounded.astype(dtype)
    return array.astype(dtype)


def check_output_path(output, input_path=None) -> Path:
    """Validate OUTPUT before any work is done, so a bad path costs nothing."""
    output = Path(output)
    if suffix_of(output) not in WRITE_SUFFIXES:
        raise InputError(f"unsupported output format {output.name!r}; use one of "
                         + ", ".join(WRITE_SUFFIXES))
    if input_path is not None and output.resolve() == Path(input_path).resolve():
        raise InputError("OUTPUT is the same file as INPUT; the input is never overwritten")
    check_writable_folder(output)
    return output


def check_writable_folder(path) -> Path:
    """The folder that will hold ``path`` exists and this user may write into it."""
    parent = Path(path).resolve().parent
    try:
        exists = parent.is_dir()
    except OSError:  # a parent folder this user may not even look into
        raise InputError(f"output folder is not accessible: {parent}") from None
    if not exists:
        raise InputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output folder is not writable: {parent}")
    return Path(path)


def image_of(volume: Volume):
    """The SimpleITK image of ``volume`` with its geometry."""
    sitk = _sitk()
    geometry = volume.geometry
    d = geometry.direction
    if volume.dimension == 2:
        image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array[0]),
                                       isVector=volume.components > 1)
        image.SetSpacing(geometry.spacing[:2])
        image.SetOrigin(geometry.origin[:2])
        image.SetDirection((d[0], d[1], d[3], d[4]))
        return image
    if volume.dimension == 4:  # isVector: SimpleITK reads a 4-D array as 3-D vectors
        image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array), isVector=False)
        spacing, origin = volume.frames
        image.SetSpacing(tuple(geometry.spacing) + (spacing,))
        image.SetOrigin(tuple(geometry.origin) + (origin,))
        image.SetDirection((d[0], d[1], d[2], 0.0, d[3], d[4], d[5], 0.0,
                            d[6], d[7], d[8], 0.0, 0.0, 0.0, 0.0, 1.0))
        return image
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array),
                                   isVector=volume.components > 1)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


@contextlib.contextmanager
def writing(path) -> Iterator[None]:
    """Turn a failed write (disk full, folder removed or made read-only during the run)
    into one :class:`OutputError` line; SimpleITK reports such failures as RuntimeError."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except RuntimeError as exc:
        if isinstance(exc, (OutputError, Cancelled)):
            raise
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line for line in lines if "ERROR" in line), lines[-1] if lines else "")
        raise OutputError(f"cannot write {path}: {reason[:160]}") from None


def write_atomically(path, write: Callable[[str], None], suffix: str = "") -> Path:
    """``write(temporary)`` into a file beside ``path``, then rename it into place, so a
    reader never sees half a file; the temporary file is removed on any failure.  The
    file gets the usual 0644 mode: mkstemp's 0600 would keep other users out."""
    path = Path(path)
    with writing(path):
        handle, temporary = tempfile.mkstemp(prefix=".nsn2n-", suffix=suffix,
                                             dir=path.resolve().parent)
        os.close(handle)
        try:
            write(temporary)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
    return path


def check_format_holds(volume: Volume, path) -> None:
    """The output format can store ``volume``'s geometry as it is: NIfTI keeps only
    orthonormal directions (ITK would straighten a sheared one, a gantry tilt, with no
    more than a console warning)."""
    if suffix_of(Path(path)) not in (".nii", ".nii.gz"):
        return
    direction = np.asarray(volume.geometry.direction).reshape(3, 3)
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise InputError(f"{Path(path).name}: NIfTI cannot hold this volume's sheared "
                         "(non-orthogonal) directions; write .nrrd or .mha instead")


def write_volume(volume: Volume, path) -> Path:
    """Write atomically: a temporary folder beside the target, then rename into place.
    The output path was checked before the run (``check_output_path``); what has gone
    wrong with it since (its folder removed, made read-only) is an :class:`OutputError`."""
    try:
        path = check_output_path(path)
    except InputError as exc:
        raise OutputError(str(exc)) from None
    check_format_holds(volume, path)
    sitk = _sitk()
    image = image_of(volume)
    with writing(path):
        staging = Path(tempfile.mkdtemp(prefix=".nsn2n-", dir=path.resolve().parent))
        try:
            staged = staging / path.name
            sitk.WriteImage(image, str(staged), useCompression=suffix_of(path) != ".nii")
            # Detached headers (.nhdr, .mhd) name their data file: move data first and
            # the header last, so a reader never sees a header without its data.
            others = [p for p in staging.iterdir() if p != staged]
            for data_file in others:
                os.replace(data_file, path.resolve().parent / data_file.name)
            os.replace(staged, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return path
