"""A denoised volume as a derived DICOM series, to send back to PACS beside its source.

The new series keeps the source's patient, study and frame of reference, has new Series
and SOP Instance UIDs, says what it is (ImageType DERIVED\\SECONDARY, a series and a
derivation description naming the method and preset) and stores its voxels in a pixel
type that holds their range: integer volumes as they are, float volumes as unsigned
16-bit values with a rescale slope and intercept.  Written with SimpleITK (GDCM) into a
staging folder that is renamed into place, so a reader never sees half a series.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Dict

import numpy as np

from .errors import InputError
from .volume import Volume, check_writable_folder, dicom_series_files, image_of, writing

# What the derived series shares with its source: patient, study, equipment, frame of
# reference, and the storage class (a CT stays a CT image, not a secondary capture).
COPIED_TAGS = (
    "0008|0016",  # SOP Class UID
    "0008|0020", "0008|0030", "0008|0050", "0008|0060", "0008|0070", "0008|0080",
    "0008|0090", "0008|1030", "0008|1090",
    "0010|0010", "0010|0020", "0010|0030", "0010|0040", "0010|1010",
    "0018|0015", "0018|5100",
    "0020|000d", "0020|0010", "0020|0052",
)
SERIES_NUMBER_OFFSET = 1000  # derived series are numbered apart from the scanner's
_LO_LENGTH = 64  # the longest Long String (Series Description)
_ST_LENGTH = 1024  # the longest Short Text (Derivation Description)


def new_uid() -> str:
    """A UID under the 2.25 root (ITU-T X.667: a UUID as a decimal), so none needs to be
    registered."""
    return f"2.25.{uuid.uuid4().int}"


def is_dicom_output(path) -> bool:
    """OUTPUT names a DICOM series folder: an existing folder, or a path without a file
    extension."""
    path = Path(path)
    if path.suffix == "":
        return True
    try:
        return path.is_dir()
    except OSError:  # a place this user may not look into: the file checks say so
        return False


def is_derived_series(folder) -> bool:
    """``folder`` holds a series :func:`write_derived_series` wrote, and nothing else."""
    names = [entry.name for entry in Path(folder).iterdir()]
    return bool(names) and all(re.fullmatch(r"IM\d{5}\.dcm", name) for name in names)


def check_output_folder(path, input_path, replace_derived: bool = False) -> Path:
    """Validate a DICOM output folder before any work: a DICOM input (whose patient and
    study it keeps), and a new or empty folder in a writable place; with
    ``replace_derived`` (a batch re-running a case) also one holding only a series this
    product wrote, which the new one replaces."""
    path = Path(path)
    if not Path(input_path).is_dir():
        raise InputError("DICOM output needs a DICOM series folder as input (its patient and "
                         "study are kept); write a file (.nii.gz, .nrrd, ...) instead")
    if path.resolve() == Path(input_path).resolve():
        raise InputError("OUTPUT is the input folder; the input is never overwritten")
    if path.is_dir() and any(path.iterdir()) and not (replace_derived
                                                      and is_derived_series(path)):
        raise InputError(f"output folder {path} is not empty; DICOM output needs a new or "
                         "empty folder")
    check_writable_folder(path)
    return path


def source_tags(folder) -> Dict[str, str]:
    """The tags of the source series' first file that the derived series keeps, and its
    series description and number."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(dicom_series_files(Path(folder), warn=False)[0])
    reader.ReadImageInformation()
    wanted = COPIED_TAGS + ("0008|103e", "0020|0011")
    return {key: reader.GetMetaData(key).strip() for key in wanted if reader.HasMetaDataKey(key)}


def series_tags(source: Dict[str, str], description: str, derivation: str) -> Dict[str, str]:
    """The tags every file of the derived series carries."""
    now = datetime.datetime.now()
    tags = {key: source[key] for key in COPIED_TAGS if source.get(key)}
    try:
        number = int(source.get("0020|0011", "0")) + SERIES_NUMBER_OFFSET
    except ValueError:
        number = SERIES_NUMBER_OFFSET
    original = source.get("0008|103e", "")
    tags.update({
        "0008|0008": "DERIVED\\SECONDARY",
        "0020|000e": new_uid(),
        "0020|0011": str(number),
        "0008|103e": f"{original} {description}".strip()[:_LO_LENGTH],
        "0008|2111": derivation[:_ST_LENGTH],
        "0008|0021": now.strftime("%Y%m%d"),
        "0008|0031": now.strftime("%H%M%S"),
        "0008|0012": now.strftime("%Y%m%d"),
        "0008|0013": now.strftime("%H%M%S"),
    })
    return tags


def pixel_tags(array: np.ndarray) -> Dict[str, str]:
    """How the voxels are stored: integers as they are; floats as unsigned 16-bit values
    with a rescale (GDCM converts with it), the slope as fine as the range allows."""
    if array.dtype.kind in "iu":
        return {}
    low, high = float(array.min()), float(array.max())
    slope = (high - low) / 65535 if high > low else 1.0
    return {"0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "0",
            "0028|1052": f"{low:.10g}", "0028|1053": f"{slope:.10g}"}


def check_dicom_volume(volume: Volume, result: bool = True) -> None:
    """What a DICOM series holds here: one gray volume or image.  Before the run
    (``result`` False) an RGB input passes: Speckle2Self's output is gray."""
    if volume.dimension == 4 or (result and volume.components != 1):
        raise InputError("DICOM output takes a gray volume or image; write a series of "
                         "volumes or an RGB image as a file (.nii.gz, .nrrd, ...)")


def write_derived_series(volume: Volume, folder, source: Dict[str, str], description: str,
                         derivation: str) -> Path:
    """Write ``volume`` as a derived series of ``source`` (:func:`source_tags`) into the
    new or empty ``folder``, atomically, or in place of the derived series it holds
    (checked by :func:`check_output_folder`); return the folder."""
    import SimpleITK as sitk

    folder = Path(folder)
    check_dicom_volume(volume)
    image = image_of(volume)
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    shared = {**series_tags(source, description, derivation), **pixel_tags(volume.array)}
    direction = image.GetDirection()
    orientation = "\\".join(f"{v:.10g}" for v in (direction[0], direction[3], direction[6],
                                                 direction[1], direction[4], direction[7]))
    with writing(folder):
        staging = Path(tempfile.mkdtemp(prefix=".nsn2n-", dir=folder.resolve().parent))
        earlier = None
        try:
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()  # the UIDs set here, not GDCM's own
            for k in range(image.GetSize()[2]):
                piece = image[:, :, k]
                position = image.TransformIndexToPhysicalPoint((0, 0, k))
                for key, value in {**shared, "0008|0018": new_uid(), "0020|0013": str(k + 1),
                                   "0020|0037": orientation,
                                   "0020|0032": "\\".join(f"{v:.10g}" for v in position),
                                   "0018|0050": f"{image.GetSpacing()[2]:.10g}"}.items():
                    piece.SetMetaData(key, value)
                writer.SetFileName(str(staging / f"IM{k + 1:05d}.dcm"))
                writer.Execute(piece)
            if folder.is_dir() and any(folder.iterdir()):  # a derived series (checked)
                earlier = Path(tempfile.mkdtemp(prefix=".nsn2n-", dir=folder.resolve().parent))
                os.replace(folder, earlier / "series")
            elif folder.is_dir():
                folder.rmdir()  # empty (checked): replaced by the finished series
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if earlier is not None:
                shutil.rmtree(earlier, ignore_errors=True)
    return folder
