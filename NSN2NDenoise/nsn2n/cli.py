"""The ``nsn2n`` command.

``nsn2n denoise INPUT OUTPUT [options]`` denoises one volume.  Bad input exits with status
2 and one line on stderr, and OUTPUT is not created; a cancelled run (Ctrl-C) exits with
130 and writes nothing.  ``nsn2n batch INPUT_FOLDER OUTPUT_FOLDER [options]`` denoises
many (``batch.py``): exit 1 when a case failed, the others done.  The benchmarks are not part of the command: they live in the
repository (``python -m benchmarks``), not in the package.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import sys
from typing import List, Optional, Tuple

from .errors import Cancelled, InputError, OutputError
from .options import (BIAS_CORRECTION, METHODS, MODALITIES, PRECISIONS, PRESETS, SLICE_AXES,
                      DenoiseOptions)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
# Starts the one stderr line of every error the command reports (the Slicer panel's
# process reader looks for it).
ERROR_PREFIX = "nsn2n: error:"
# Set to show the traceback of an unexpected error instead of its one line.
TRACEBACK_VARIABLE = "NSN2N_TRACEBACK"


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nsn2n", description="Self-supervised denoising of medical image volumes.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("denoise", help="denoise one volume or ultrasound image/cine "
                              "(NIfTI, NRRD, MetaImage, DICOM file or series folder)")
    run.add_argument("input", help="input file, or a folder holding one DICOM series")
    run.add_argument("output", help="output file: .nii, .nii.gz, .nrrd, .nhdr, .mha or "
                     ".mhd; or, for a DICOM series input, a new or empty folder (a path "
                     "without an extension): the result as a derived DICOM series of the "
                     "same patient and study")
    _add_options(run)
    run.add_argument("--preview", help="also write a before/after PNG here")
    run.add_argument("--progress", default="auto", choices=["auto", "bar", "json", "none"],
                     help="bar on a terminal (auto), JSON lines on stdout, or nothing")
    run.add_argument("--report", help="write the run's report (JSON) here")
    run.add_argument("--save-model", help="also save the trained network here (.pt), to "
                     "start other volumes of the same protocol from it (--model)")

    many = commands.add_parser(
        "batch", help="denoise every volume under a folder, or the cases of a CSV manifest, "
        "into a mirrored folder tree; resumable (finished cases are skipped)")
    many.add_argument("input", help="input folder (searched recursively), or a CSV manifest "
                      "with an 'input' column and optional 'output' and option columns")
    many.add_argument("output", help="output folder (created if missing)")
    _add_options(many)
    many.add_argument("--pattern", default="*", help="file name pattern (default: every "
                      "volume file; a folder of .dcm files is one DICOM series)")
    many.add_argument("--output-format", help="write every output in this format, e.g. "
                      ".nii.gz (default: the input's)")
    many.add_argument("--workers", default="auto", help="cases at once: auto (one per GPU, "
                      "else one per --threads CPUs, a case taking up to 4; on a local Dask "
                      "cluster when more than one) or a number; 1 runs them in this process")
    many.add_argument("--threads", type=int, default=None, help="torch threads per case "
                      "(default: all CPUs in this process; on a cluster up to 4 with auto "
                      "workers, else 1)")
    many.add_argument("--scheduler", help="address of an existing Dask scheduler "
                      "(tcp://host:8786) to run the cases on")
    many.add_argument("--progress", default="auto", choices=["auto", "bar", "none"],
                      help="a bar of cases done on a terminal (auto), or nothing")
    return parser


def _add_options(parser: argparse.ArgumentParser) -> None:
    """The denoise options, shared by ``denoise`` and ``batch``."""
    # dest names are DenoiseOptions' field names: the options are built from them as they are
    parser.add_argument("--method", default="auto", choices=METHODS,
                        help="auto: series for a 4-D series of volumes, speckle2self for "
                        "ultrasound (modality US), else nsn2n; speckle2self also takes 2-D "
                        "images, cines and RGB (converted to gray)")
    parser.add_argument("--preset", default="balanced", choices=PRESETS)
    parser.add_argument("--steps", type=int, help="training steps (overrides the preset)")
    parser.add_argument("--max-minutes", type=float, help="time budget for the whole run: "
                        "training stops early enough to finish within it; results then "
                        "depend on machine speed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 where the hardware runs it natively, fp16 on other "
                        "CUDA GPUs, else fp32; fp32 forces full precision on any machine")
    parser.add_argument("--slice-axis", default="auto", choices=SLICE_AXES,
                        help="array axis across slices or frames: auto (largest spacing; "
                        "ties and single images: axis 0), 0, 1 or 2")
    parser.add_argument("--series-stride", type=int, default=1,
                        help="series only: volumes of the same kind are this many apart "
                        "(2 for ASL label/control pairs)")
    parser.add_argument("--modality", choices=MODALITIES,
                        help="override the modality read from the file or guessed from HU")
    parser.add_argument("--model", help="start from this network (a .pt file saved by "
                        "--save-model from a volume of the same protocol) and fine-tune it: "
                        "a quarter of the preset's steps unless --steps says otherwise")
    parser.add_argument("--noise-sigma", type=float,
                        help="nsn2n: the noise's standard deviation in the image's units, "
                        "when known (from a repeat or a noise scan); default: estimated")
    parser.add_argument("--bias-correction", default="auto", nargs="?", const="on",
                        choices=tuple(BIAS_CORRECTION),
                        help="the Rician bias correction of magnitude MRI: auto (MR with a "
                        "Rayleigh background), on (also the flag alone) or off")


def options_from(args: argparse.Namespace) -> DenoiseOptions:
    """The options of ``denoise`` (``batch`` has no ``--save-model``: every case would
    write the same file)."""
    return DenoiseOptions(**{field.name: getattr(args, field.name, None)
                             for field in dataclasses.fields(DenoiseOptions)})


def arguments_for(options: DenoiseOptions) -> List[str]:
    """The ``denoise`` flags that :func:`options_from` turns back into ``options``: how
    another process (the Slicer panel's) asks for the same run."""
    arguments = []
    for field in dataclasses.fields(DenoiseOptions):
        value = getattr(options, field.name)
        if value is None:
            continue
        if field.name == "bias_correction":
            value = "on" if value else "off"
        arguments += ["--" + field.name.replace("_", "-"), str(value)]
    return arguments


class _Reporter:
    """Turns engine progress into a tqdm bar per phase or JSON lines."""

    def __init__(self, mode: str):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        self.mode = mode
        self._bar = None
        self._phase = None

    def __call__(self, p) -> None:
        if self.mode == "json":
            print(json.dumps({"phase": p.phase, "step": p.step, "total": p.total,
                              "loss": None if p.loss != p.loss else round(p.loss, 6),
                              "elapsed": round(p.elapsed, 2),
                              "remaining": None if p.remaining != p.remaining
                              else round(p.remaining, 1)}), flush=True)
        elif self.mode == "bar":
            if p.phase != self._phase or self._bar is None:
                from tqdm import tqdm

                self.close()
                self._phase = p.phase
                self._bar = tqdm(total=p.total, desc=f"{p.phase:8s}", unit="step",
                                 file=sys.stderr, dynamic_ncols=True)
            self._bar.total = p.total
            self._bar.update(p.step - self._bar.n)
            if p.loss == p.loss:
                self._bar.set_postfix(loss=f"{p.loss:.5f}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _denoise(args) -> int:
    from .files import denoise_file
    from .pipeline import budget_warning
    from .runtime import Progress

    options = options_from(args)
    reporter = _Reporter(args.progress)

    def shown(estimated) -> None:
        if reporter.mode == "json":  # a progress line whose time left is the whole estimate
            reporter(Progress("estimate", 0, 0, float("nan"), 0.0, estimated.seconds))
            return
        if reporter.mode == "bar":
            print(f"nsn2n: this run should take about {duration(estimated.seconds)}",
                  file=sys.stderr)
        shortfall = budget_warning(estimated, options)
        if shortfall:  # the panel (json) gets it in the report
            print(f"nsn2n: {shortfall}", file=sys.stderr)

    try:  # Ctrl-C raises KeyboardInterrupt here, before anything is written
        report = denoise_file(args.input, args.output, options, preview=args.preview,
                              report=args.report, progress=reporter, on_estimate=shown)
    finally:
        reporter.close()
    if reporter.mode != "json":
        detail = report.summary()
        print(f"wrote {args.output} ({report.method}, {report.steps} steps on "
              f"{report.device}, {report.total_seconds:.0f} s{'; ' + detail if detail else ''})",
              file=sys.stderr)
    if report.warning:
        logging.getLogger("nsn2n").warning("warning: %s", report.warning)
    return EXIT_OK


def _batch(args) -> int:
    import time
    from pathlib import Path

    from . import batch
    from .pipeline import validate
    from .volume import check_writable_folder

    options = options_from(args)
    source, output = Path(args.input), Path(args.output)
    if source.is_file() and source.suffix.lower() == ".csv":
        cases = batch.cases_from_manifest(source, output, options, args.output_format)
    else:
        cases = batch.cases_from_folder(source, output, options, args.pattern,
                                        args.output_format)
    for options_of_case in {case.options for case in cases}:
        validate(options_of_case)
    workers, threads = _workers(args.workers, args.threads, args.scheduler)
    if output.exists() and not output.is_dir():
        raise InputError(f"output must be a folder, not a file: {output}")
    if not output.is_dir():
        check_writable_folder(output)
        output.mkdir()
    todo = batch.pending(cases)
    print(f"nsn2n: {len(cases)} cases: {len(cases) - len(todo)} already done, {len(todo)} "
          f"to run" + (f" on {workers} workers" if workers > 1 else ""), file=sys.stderr)
    progress = args.progress
    if progress == "auto":
        progress = "bar" if sys.stderr.isatty() else "none"
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="case", file=sys.stderr, disable=progress != "bar",
               dynamic_ncols=True)
    failed = []

    def on_record(record: dict) -> None:
        if record["status"] == batch.FAILED:
            failed.append(record)
        bar.update(1)
        bar.set_postfix(failed=len(failed), refresh=False)

    started = time.perf_counter()
    cancelled = False
    try:
        if todo and (workers > 1 or args.scheduler):
            from .cluster import run_on_cluster

            run_on_cluster(todo, on_record, scheduler=args.scheduler, workers=workers,
                           threads=threads)
        else:
            batch.run_serial(todo, on_record, threads=threads)
    except (Cancelled, KeyboardInterrupt):
        cancelled = True
    finally:
        bar.close()
    rows = batch.summary_rows(cases)
    summary = batch.write_summary(rows, output / batch.SUMMARY_NAME)
    print(batch.summary_text(rows, len(cases) - len(todo), time.perf_counter() - started)
          + f"\nsummary: {summary}", file=sys.stderr)
    if cancelled:
        print("nsn2n: cancelled; finished cases are kept and cases in progress were not "
              "written: run the same command again to go on", file=sys.stderr)
        return EXIT_CANCELLED
    return EXIT_FAILED if failed else EXIT_OK


def _workers(requested: str, threads: Optional[int], scheduler: Optional[str]
             ) -> Tuple[int, Optional[int]]:
    """How many cases run at once and with how many torch threads each."""
    if scheduler:
        return 0, threads or 1
    if requested == "auto":
        import torch

        from .cluster import plan_workers

        count, per_case = plan_workers(threads, gpus=torch.cuda.device_count())
        if count > 1 and importlib.util.find_spec("distributed") is None:
            logging.getLogger("nsn2n").warning(
                "running the cases one at a time: pip install 'dask[distributed]' to run "
                "%d at once", count)
            return 1, threads
        return count, (threads if count == 1 else per_case)
    try:
        count = int(requested)
    except ValueError:
        raise InputError(f"workers must be auto or a whole number, not {requested!r}"
                         ) from None
    if count < 1:
        raise InputError(f"workers must be at least 1, not {count}")
    return count, (threads if count == 1 else threads or 1)


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: "40 s", "3 min 10 s"."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    return f"{seconds // 60} min {seconds % 60:02d} s"


@contextlib.contextmanager
def _cancelled_by_terminate():
    """SIGTERM (how the Slicer panel and job schedulers stop a run) ends the run as
    Ctrl-C does: through the cleanup paths, with nothing written."""
    import signal
    import threading

    def cancel(signum, frame):
        raise Cancelled("terminated")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="nsn2n: %(message)s")
    try:
        with _cancelled_by_terminate():
            return _batch(args) if args.command == "batch" else _denoise(args)
    except InputError as exc:
        print(f"{ERROR_PREFIX} {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        print("nsn2n: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except OutputError as exc:
        print(f"{ERROR_PREFIX} {exc}", file=sys.stderr)
        return EXIT_FAILED
    except MemoryError:
        print(f"{ERROR_PREFIX} out of memory", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - a bug still ends in one line, not a traceback
        if os.environ.get(TRACEBACK_VARIABLE):
            raise
        if "out of memory" in str(exc).lower():  # torch's GPU out-of-memory
            print(f"{ERROR_PREFIX} the device ran out of memory; try --device cpu",
                  file=sys.stderr)
        else:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            print(f"{ERROR_PREFIX} unexpected {type(exc).__name__}: {first} (a bug: please "
                  f"report it; {TRACEBACK_VARIABLE}=1 shows where it happened)",
                  file=sys.stderr)
        return EXIT_FAILED
