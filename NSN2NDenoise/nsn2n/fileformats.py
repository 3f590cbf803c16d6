"""What an image file holds, checked where SimpleITK would guess or stay silent.

SimpleITK picks a reader by the file name, so an image under the wrong extension is
"not a supported image file", and its NIfTI reader fills the missing part of a truncated
file with zeros and NaN or Inf with zeros without a word.  These checks read the bytes
themselves, in bounded chunks, and turn each case into one line that names the problem.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import struct
import sys
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .errors import InputError

# The file name endings of each format, the first one the one to suggest.
FORMAT_SUFFIXES = {
    "NIfTI": (".nii.gz", ".nii"),
    "NRRD": (".nrrd", ".nhdr"),
    "MetaImage": (".mha", ".mhd"),
    "DICOM": (".dcm",),
}
_CHUNK = 16 * 2 ** 20
_NIFTI_FLOAT = {16: "f4", 64: "f8"}


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def format_of_name(path: Path) -> Optional[str]:
    suffix = suffix_of(path)
    return next((name for name, suffixes in FORMAT_SUFFIXES.items() if suffix in suffixes),
                None)


def format_of_content(path: Path) -> Optional[str]:
    """The format the first bytes of ``path`` say it is in; None when none of ours."""
    with open(path, "rb") as handle:
        head = handle.read(352)
    if head[:2] == b"\x1f\x8b":  # gzip: NIfTI is the one format we read compressed whole
        try:  # the first bytes of the stream, however little of it there is
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head)
        except zlib.error:
            return None
    if head[:4] == b"NRRD":
        return "NRRD"
    if len(head) >= 4 and {348, 540} & set(struct.unpack("<i", head[:4])
                                          + struct.unpack(">i", head[:4])):
        return "NIfTI"  # NIfTI-1 or -2: the header's size, in either byte order
    text = head[:64].lstrip()
    if text.startswith((b"ObjectType", b"NDims", b"Comment", b"ObjectSubType")):
        return "MetaImage"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    return None


def check_file(path: Path) -> None:
    """One clear line for a file that is empty or whose content and name disagree."""
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"input is empty (0 bytes): {path}")
    named, held = format_of_name(path), format_of_content(path)
    if held == "DICOM" and named is None:
        return  # DICOM files often have no extension; GDCM knows them by their content
    if held is not None and held != named:
        raise InputError(f"{path} holds a {held} image but its name ends in "
                         f"{suffix_of(path) or 'no extension'}; rename it to end in "
                         f"{FORMAT_SUFFIXES[held][0]}")


def check_nifti_data(path: Path) -> None:
    """A NIfTI file holds all the voxels its header promises, and, for float voxels, no
    NaN or Inf: SimpleITK's reader zero-fills both cases silently."""
    try:
        expected, found, bad = _scan_nifti(path)
    except (EOFError, zlib.error):  # a gzip stream cut short or damaged
        expected, found, bad = 1, 0, 0
    if found < expected:
        raise InputError(f"{path} is truncated or damaged: its voxel data ends before "
                         "the end its header describes")
    if bad:
        raise InputError(f"{path} has {bad} NaN or infinite voxels")


def _scan_nifti(path: Path):
    """(bytes of voxel data the header describes, bytes there, non-finite floats)."""
    opener = gzip.open if suffix_of(path) == ".nii.gz" else open
    with opener(path, "rb") as handle:
        header = handle.read(352)
        if len(header) < 348:
            return 0, 0, 0  # not NIfTI-1 (NIfTI-2 is left to SimpleITK)
        endian = "<" if struct.unpack("<i", header[:4])[0] == 348 else ">"
        datatype, bitpix = struct.unpack(endian + "hh", header[70:74])
        dims = struct.unpack(endian + "8h", header[40:56])
        if not 1 <= dims[0] <= 7 or bitpix <= 0:
            return 0, 0, 0  # SimpleITK refuses such a header itself
        count = int(np.prod([max(d, 1) for d in dims[1:dims[0] + 1]], dtype=np.int64))
        expected = count * bitpix // 8
        float_type = _NIFTI_FLOAT.get(datatype)
        handle.seek(int(struct.unpack(endian + "f", header[108:112])[0]))
        found, bad = 0, 0
        while found < expected:
            chunk = handle.read(min(_CHUNK, expected - found))
            if not chunk:
                break
            if float_type is not None:
                usable = len(chunk) - len(chunk) % np.dtype(float_type).itemsize
                values = np.frombuffer(chunk[:usable], dtype=endian + float_type)
                bad += int(values.size - np.count_nonzero(np.isfinite(values)))
            found += len(chunk)
    return expected, found, bad


@contextlib.contextmanager
def readable_name(path: Path) -> Iterator[Path]:
    """A name under which SimpleITK reads ``path``'s own voxels.

    For ``NAME.nii.gz`` the NIfTI library takes the header from the file it is given but
    looks for the voxel data in ``NAME.nii`` first (ITK 5.4, ``nifti_findimgname``), so a
    ``NAME.nii`` beside it is read in its place without a word: a folder holding both
    (after ``gzip -k``, or an earlier export) would have the wrong scan denoised.  Such a
    file is read through a link, or a copy where links are not allowed, in a private
    temporary folder that is removed afterwards.
    """
    path = Path(path)
    if suffix_of(path) != ".nii.gz" or not path.with_name(path.name[:-3]).exists():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="nsn2n-") as folder:
        alias = Path(folder) / "volume.nii.gz"
        try:
            os.symlink(path.resolve(), alias)
        except OSError:  # Windows without the symlink privilege
            shutil.copyfile(path, alias)
        yield alias


@contextlib.contextmanager
def native_messages_held() -> Iterator[list]:
    """Hold what the image libraries print straight to standard error (the NIfTI and
    MetaImage readers do, beside the exception SimpleITK raises), so a bad file gives
    one line, not three; the held lines are in the yielded list afterwards.  Only on the
    main thread: redirecting the process's standard error is not safe beside others."""
    held: list = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real standard error (a GUI, a test capture)
        yield held
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield held
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            held.extend(sink.read().decode("utf-8", "replace").splitlines())
