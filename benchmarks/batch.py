"""Batch throughput (``python -m benchmarks batch``): cases per minute of ``nsn2n batch``
run in this process one case at a time against a local Dask cluster, on the same folder.

Two cohorts: real volumes of one protocol (the first volumes of the ASL series of
``shared/realdata``, 20x72x72 each, as separate files: a small-volume cohort), and many
tiny synthetic cases that cost almost nothing to denoise, so that what the batch itself
costs per case (the scheduler, the records, the reading and writing) shows.  Every run is
the command as a user types it, in a child process, on the fp32 path (the path of most
users' CPUs).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .report import machine, markdown_table, save


@dataclasses.dataclass
class BatchRow:
    cohort: str
    mode: str
    workers: int
    threads: int
    cases: int
    done: int
    seconds: float  # wall time of the command
    median_case: float  # median seconds of one case as its record says

    @property
    def per_minute(self) -> float:
        return 60 * self.done / self.seconds if self.seconds > 0 else float("nan")


def write_asl_cohort(folder: Path, count: int, data: Optional[str]) -> None:
    """The first ``count`` volumes of the real ASL series, one NIfTI file each."""
    import SimpleITK as sitk

    from .realdata import DEFAULT_FOLDER

    series = sitk.ReadImage(str(Path(data or DEFAULT_FOLDER) / "asl_series.nii.gz"))
    size = list(series.GetSize())
    for index in range(count):
        volume = sitk.Extract(series, size[:3] + [0], [0, 0, 0, index])
        sitk.WriteImage(volume, str(folder / f"asl_{index:03d}.nii.gz"))


def write_tiny_cohort(folder: Path, count: int) -> None:
    """``count`` tiny noisy CT volumes (6x32x32)."""
    from Testing.helpers import write_ct

    for index in range(count):
        write_ct(folder / f"tiny_{index:03d}.nrrd", index)


def run_batch(source: Path, out: Path, workers: int, threads: int, extra: Sequence[str]
              ) -> Tuple[float, int, float]:
    """One ``nsn2n batch`` command: its wall seconds, the cases done, the median case."""
    command = [sys.executable, "-m", "nsn2n", "batch", str(source), str(out), "--workers",
               str(workers), "--threads", str(threads), "--progress", "none", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    with open(out / "nsn2n-batch.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    done = [float(r["seconds"]) for r in rows if r["status"] == "done"]
    return seconds, len(done), statistics.median(done) if done else float("nan")


def table(rows: List[BatchRow]) -> str:
    serial = {r.cohort: r for r in rows if r.workers == 1}
    return markdown_table(
        ("cohort", "mode", "workers x threads", "cases done", "wall (s)", "cases / min",
         "median case (s)", "throughput vs one at a time"),
        ((r.cohort, r.mode, f"{r.workers} x {r.threads}", f"{r.done} / {r.cases}",
          f"{r.seconds:.0f}", f"{r.per_minute:.1f}", f"{r.median_case:.1f}",
          f"{r.per_minute / serial[r.cohort].per_minute:.2f}x" if r.cohort in serial
          else "-") for r in rows))


def run(args) -> int:
    cpus = os.cpu_count() or 1
    modes = [("one at a time", 1, cpus), ("local Dask cluster", cpus, 1)]
    cohorts = [("real ASL 20x72x72, `fast`", "asl", args.cases,
                ["--preset", "fast", "--precision", "fp32", "--seed", str(args.seed)]),
               ("tiny 6x32x32, 10 steps", "tiny", args.tiny,
                ["--steps", "10", "--precision", "fp32", "--seed", str(args.seed)])]
    rows: List[BatchRow] = []
    with tempfile.TemporaryDirectory(prefix="nsn2n-batch-bench-") as scratch:
        for name, kind, count, extra in cohorts:
            source = Path(scratch) / kind
            source.mkdir()
            if kind == "asl":
                write_asl_cohort(source, count, args.data)
            else:
                write_tiny_cohort(source, count)
            for mode, workers, threads in modes:
                out = Path(scratch) / f"{kind}-{workers}"
                seconds, done, median = run_batch(source, out, workers, threads, extra)
                rows.append(BatchRow(name, mode, workers, threads, count, done,
                                     round(seconds, 1), round(median, 2)))
                print(f"{name}, {mode}: {done}/{count} in {seconds:.1f} s "
                      f"({rows[-1].per_minute:.1f} cases/min)", flush=True)
    text = "\n\n".join([
        f"Machine: {machine()}. `python -m benchmarks batch`; {time.strftime('%Y-%m-%d')}; "
        "each row one `nsn2n batch` command from a cold start (interpreter, torch, and for "
        "the cluster its worker processes).",
        table(rows)])
    save(Path(args.out), "batch", text, rows, getattr(args, "docs", None))
    return 0
