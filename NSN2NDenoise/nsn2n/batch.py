"""Denoise many files (``nsn2n batch``): cases, their records, resuming, the summary.

Cases come from a folder (recursively, by pattern) or from a CSV manifest.  A case's output
mirrors its input's place under the output folder; a folder of DICOM files is one case whose
output is a derived DICOM series (``files.denoise_file`` does every case's work).

Each finished case leaves, after its output, a record beside it (``<output>.nsn2n.json``:
options, seed, versions, timings, the run's report, status or error).  A case whose record
says done with the same options, and whose output exists, is skipped: a re-run after a crash
or a cancel goes on where it stopped.  A failed case is tried again on the next run; a case
failing never stops the others.  Outputs and records are written atomically (renamed into
place), so neither is ever seen half-written.

Cases run one after another in this process (:func:`run_serial`) or on a Dask cluster
(``cluster.py``); both call :func:`run_case`, so they give the same outputs.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import platform
import socket
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from .errors import Cancelled, InputError
from .options import DenoiseOptions
from .runtime import CancelEvent, check_cancel
from .volume import WRITE_SUFFIXES, suffix_of, write_atomically

RECORD_SUFFIX = ".nsn2n.json"
SUMMARY_NAME = "nsn2n-batch.csv"
DONE, FAILED, SKIPPED = "done", "failed", "skipped"
# ``.dcm`` files make their folder a case; the volume formats (volume.WRITE_SUFFIXES) are
# cases of their own.
DICOM_SUFFIX = ".dcm"
# Manifest columns besides input and output: DenoiseOptions fields, with the type a CSV
# cell is read as (strings otherwise).
_NUMBERS = {"steps": int, "seed": int, "series_stride": int, "max_minutes": float,
            "noise_sigma": float}


@dataclasses.dataclass(frozen=True)
class Case:
    """One input to denoise into one output with its options."""

    input: Path
    output: Path
    options: DenoiseOptions
    name: str  # how the summary names it: the input relative to the batch's input

    @property
    def record(self) -> Path:
        return self.output.with_name(self.output.name + RECORD_SUFFIX)


def _with_format(path: Path, output_format: Optional[str]) -> Path:
    if not output_format:
        return path
    suffix = suffix_of(path)
    stem = path.name[:-len(suffix)] if suffix else path.name
    return path.with_name(stem + output_format)


def cases_from_folder(input_root, output_root, options: DenoiseOptions = DenoiseOptions(),
                      pattern: str = "*", output_format: Optional[str] = None) -> List[Case]:
    """Every volume file under ``input_root`` whose name matches ``pattern``, and every
    folder holding matching ``.dcm`` files (one DICOM series), with its output at the same
    place under ``output_root`` (in ``output_format``, e.g. ``.nii.gz``, if given; a
    DICOM series gives a derived series).  Hidden entries and ``output_root`` itself (when
    it lies inside ``input_root``) are left out."""
    input_root, output_root = Path(input_root), Path(output_root)
    if not input_root.is_dir():
        raise InputError(f"input folder does not exist: {input_root}")
    if output_format and output_format not in WRITE_SUFFIXES:
        raise InputError(f"unsupported output format {output_format!r}; use one of "
                         + ", ".join(WRITE_SUFFIXES))
    skip = output_root.resolve()
    cases: List[Case] = []
    series_folders = set()
    for path in sorted(input_root.rglob(pattern)):
        relative = path.relative_to(input_root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if skip == path.resolve() or skip in path.resolve().parents:
            continue
        suffix = suffix_of(path)
        if suffix == DICOM_SUFFIX:
            series_folders.add(path.parent)
        elif suffix in WRITE_SUFFIXES:
            output = _with_format(output_root / relative, output_format)
            cases.append(Case(path, output, options, relative.as_posix()))
    for folder in sorted(series_folders):
        relative = folder.relative_to(input_root)
        output = output_root / relative if relative.parts else output_root / input_root.name
        cases.append(Case(folder, output, options, relative.as_posix() or "."))
    if not cases:
        raise InputError(f"no volumes matching {pattern!r} under {input_root}")
    _check_unique_outputs(cases)
    return cases


def cases_from_manifest(manifest, output_root, options: DenoiseOptions = DenoiseOptions(),
                        output_format: Optional[str] = None) -> List[Case]:
    """One case per row of the CSV ``manifest``: column ``input`` (a file or DICOM series
    folder), optionally ``output`` (under ``output_root`` when relative; else the input's
    name there) and any of the denoise options by field name (``preset``, ``steps``,
    ``seed``, ``modality``...), empty cells taking ``options``' values.  Relative inputs
    are read from the manifest's folder.  Every row is checked before any case runs."""
    manifest, output_root = Path(manifest), Path(output_root)
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            rows = list(reader)
            columns = [c.strip() for c in reader.fieldnames or []]
    except OSError as exc:
        raise InputError(f"cannot read the manifest {manifest}: {exc.strerror}") from None
    allowed = {"input", "output"} | {f.name for f in dataclasses.fields(DenoiseOptions)}
    unknown = [c for c in columns if c not in allowed]
    if "input" not in columns or unknown:
        raise InputError(f"manifest {manifest.name}: needs an 'input' column; other columns "
                         "may be output and the options " + ", ".join(sorted(allowed - {
                             "input", "output"}))
                         + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    cases = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        where = f"manifest {manifest.name}, line {number}"
        if not row.get("input"):
            raise InputError(f"{where}: no input")
        source = Path(row["input"])
        source = source if source.is_absolute() else manifest.parent / source
        if not source.exists():
            raise InputError(f"{where}: input does not exist: {source}")
        target = Path(row["output"]) if row.get("output") else _with_format(
            Path(source.name), output_format)
        target = target if target.is_absolute() else output_root / target
        overrides = {}
        for key, value in row.items():
            if key in ("input", "output") or value == "":
                continue
            try:
                overrides[key] = _NUMBERS.get(key, str)(value)
            except ValueError:
                raise InputError(f"{where}: {key} must be a number, not {value!r}") from None
        try:
            case_options = dataclasses.replace(options, **overrides)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        cases.append(Case(source, target, case_options, row["input"]))
    if not cases:
        raise InputError(f"manifest {manifest.name} lists no cases")
    _check_unique_outputs(cases)
    return cases


def _check_unique_outputs(cases: Sequence[Case]) -> None:
    seen: Dict[Path, str] = {}
    for case in cases:
        key = case.output.resolve()
        if key in seen:
            raise InputError(f"{seen[key]} and {case.name} would both be written to "
                             f"{case.output}")
        seen[key] = case.name


def read_record(case: Case) -> Optional[dict]:
    """The case's record, or None when there is none (or it cannot be read)."""
    try:
        with open(case.record, encoding="utf-8") as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None


def is_done(case: Case) -> bool:
    """Finished before with the same options, and its output is still there."""
    record = read_record(case)
    return (record is not None and record.get("status") == DONE
            and record.get("options") == dataclasses.asdict(case.options)
            and case.output.exists())


def versions() -> Dict[str, str]:
    """What made the output: the engine and the libraries whose versions change results."""
    import numpy
    import SimpleITK
    import torch

    from . import __version__

    return {"nsn2n": __version__, "torch": str(torch.__version__), "numpy": numpy.__version__,
            "SimpleITK": SimpleITK.Version_VersionString(), "python": platform.python_version()}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run_case(case: Case, threads: Optional[int] = None,
             cancel: Optional[CancelEvent] = None, device: Optional[str] = None) -> dict:
    """Denoise one case and write its record; returns the record.  Every error of the
    case's own (bad input, a failed run) is recorded as ``failed``, not raised; a cancel
    (``Cancelled``, Ctrl-C) is raised and leaves neither output nor record.  ``device``
    replaces the options' device for this run (a cluster worker's card); the record keeps
    the options as asked, so that :func:`is_done` recognises the case on any worker."""
    from .files import denoise_file, write_json

    started, clock = _now(), time.perf_counter()
    record = {"name": case.name, "input": str(case.input), "output": str(case.output),
              "options": dataclasses.asdict(case.options), "seed": case.options.seed,
              "versions": versions(), "host": socket.gethostname(), "started": started}
    try:
        case.output.parent.mkdir(parents=True, exist_ok=True)
        options = (case.options if device is None
                   else dataclasses.replace(case.options, device=device))
        with torch_threads(threads):
            # a file output is replaced by its new version; so is a derived series
            report = denoise_file(case.input, case.output, options, cancel=cancel,
                                  replace_derived=True)
        record.update(status=DONE, report=report.to_dict(), error=None)
    except (Cancelled, KeyboardInterrupt):
        raise
    except InputError as exc:
        record.update(status=FAILED, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one case's failure must not stop the batch
        record.update(status=FAILED, error=f"{type(exc).__name__}: {exc}")
    record.update(seconds=round(time.perf_counter() - clock, 2), finished=_now())
    try:
        write_json(record, case.record)
    except OSError as exc:
        record.update(status=FAILED, error=f"cannot write the record: {exc.strerror}")
    return record


class torch_threads:
    """Run with ``threads`` torch threads (None: as they are), then restore them."""

    def __init__(self, threads: Optional[int]):
        self.threads, self.previous = threads, None

    def __enter__(self):
        if self.threads:
            import torch

            self.previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc_info):
        if self.previous is not None:
            import torch

            torch.set_num_threads(self.previous)


def pending(cases: Iterable[Case]) -> List[Case]:
    """The cases not yet done (:func:`is_done`), in order."""
    return [case for case in cases if not is_done(case)]


def run_serial(cases: Sequence[Case], on_record: Callable[[dict], None],
               threads: Optional[int] = None, cancel: Optional[CancelEvent] = None) -> None:
    """Run ``cases`` one after another in this process, each record to ``on_record``."""
    for case in cases:
        check_cancel(cancel)
        on_record(run_case(case, threads, cancel))


def summary_rows(cases: Sequence[Case]) -> List[Dict[str, object]]:
    """One row per case from its record: what the summary table and CSV show."""
    rows = []
    for case in cases:
        record = read_record(case) or {}
        report = record.get("report") or {}
        rows.append({"case": case.name, "status": record.get("status", "not run"),
                     "seconds": record.get("seconds", ""),
                     "noise_sigma": report.get("noise_sigma", ""),
                     "matched_fraction": report.get("matched_fraction", ""),
                     "steps": report.get("steps", ""), "device": report.get("device", ""),
                     "output": str(case.output), "error": record.get("error") or ""})
    return rows


def write_summary(rows: Sequence[Dict[str, object]], path) -> Path:
    """The summary as CSV, renamed into place."""
    def write(temporary: str) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    return write_atomically(path, write, ".csv")


def summary_text(rows: Sequence[Dict[str, object]], skipped: int, seconds: float) -> str:
    """A few lines for the terminal: counts, throughput, and each failure's error."""
    done = sum(r["status"] == DONE for r in rows)
    failed = [r for r in rows if r["status"] == FAILED]
    ran = done - skipped
    rate = f", {60 * ran / seconds:.1f} cases/min" if ran > 0 and seconds > 0 else ""
    lines = [f"{done} of {len(rows)} cases done ({skipped} already done before this run), "
             f"{len(failed)} failed; {seconds:.0f} s{rate}"]
    lines += [f"  failed: {r['case']}: {r['error']}" for r in failed]
    return "\n".join(lines)
