"""Denoise one file into another: what ``nsn2n denoise`` does and ``nsn2n batch`` does per case.

Every check that needs no voxels runs before the input is read, so a bad path costs
nothing; the output (a volume file, or a derived DICOM series for a DICOM series input)
is written atomically once the run has finished, so a failed or cancelled run leaves
nothing behind; a run claims its output first (``outputlock``), so a second run on the
same output stops at once instead of replacing the first one's result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from .methods import RunReport
from .options import DenoiseOptions
from .runtime import CancelEvent, Estimate, ProgressCallback, check_cancel


def denoise_file(input_path, output_path, options: DenoiseOptions = DenoiseOptions(), *,
                 preview=None, report=None, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelEvent] = None,
                 on_estimate: Optional[Callable[[Estimate], None]] = None,
                 replace_derived: bool = False) -> RunReport:
    """Denoise ``input_path`` into ``output_path``; returns the run's report.

    ``preview``: also write a before/after PNG there; ``report``: the report as JSON there.
    ``on_estimate``: gets the time estimate before the run (a second or two to make); with
    none, the estimate is made only when a time budget needs it.  ``replace_derived``:
    a DICOM output folder may hold the derived series an earlier run wrote (a batch
    re-running a case with other options); it is replaced.
    """
    from .dicom import (check_dicom_volume, check_output_folder, is_dicom_output, source_tags,
                        write_derived_series)
    from .outputlock import claimed
    from .pipeline import denoise, estimate, validate
    from .preview import check_png_path
    from .volume import (check_format_holds, check_output_path, check_writable_folder,
                         read_volume, write_volume)

    validate(options)
    as_dicom = is_dicom_output(output_path)
    if as_dicom:
        check_output_folder(output_path, input_path, replace_derived)
    else:
        check_output_path(output_path, input_path)
    if preview:
        check_png_path(preview)
    for path in (report, options.save_model):
        if path:
            check_writable_folder(path)
    with claimed(output_path):  # a second run on this output stops here, at once
        volume = read_volume(input_path)
        if as_dicom:
            check_dicom_volume(volume, result=False)  # refused now, not after the run
        else:
            check_format_holds(volume, output_path)
        estimated = None
        if on_estimate is not None:
            estimated = estimate(volume, options)
            on_estimate(estimated)
        result, run_report = denoise(volume, options, progress=progress, cancel=cancel,
                                     estimated=estimated)
        check_cancel(cancel)  # the last moment to stop with nothing written
        if as_dicom:
            write_derived_series(result, output_path, source_tags(input_path),
                                 *derived_descriptions(run_report))
        else:
            write_volume(result, output_path)
        if preview:
            write_preview(volume, result, run_report, preview)
        if report:
            write_json(run_report.to_dict(), report)
    return run_report


def write_preview(volume, result, run_report: RunReport, path) -> None:
    """The same slices of input, output and their difference as one PNG."""
    from .intensity import to_gray
    from .preview import montage, write_png

    before, after = volume.array, result.array
    if volume.dimension == 4:  # a series: its middle volume
        before, after = before[len(before) // 2], after[len(after) // 2]
    if volume.components != 1:
        before = to_gray(before)
    write_png(path, montage(before, after, run_report.slice_axis))


def write_json(data: dict, path) -> Path:
    """``data`` as JSON at ``path``, renamed into place (``volume.write_atomically``), so a
    reader (or a resumed batch) never sees half a record."""
    from .volume import write_atomically

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, default=str)

    return write_atomically(path, write, ".json")


def derived_descriptions(report: RunReport):
    """The series description and the derivation description of a DICOM result."""
    from . import __version__

    return (f"denoised {report.method} {report.preset}",
            f"Denoised by NSN2NDenoise {__version__}: method {report.method}, preset "
            f"{report.preset}, {report.steps} training steps, seed {report.seed}, "
            f"{report.device} {report.precision}. Self-supervised: trained on this series "
            "only; not for diagnosis without comparing with the original series.")
