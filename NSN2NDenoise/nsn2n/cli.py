"""The ``nsn2n`` command.

``nsn2n denoise INPUT OUTPUT [options]`` denoises one volume.  Bad input exits with status
2 and one line on stderr, and OUTPUT is not created; a cancelled run (Ctrl-C) exits with
130 and writes nothing.  The benchmarks are not part of the command: they live in the
repository (``python -m benchmarks``), not in the package.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
from typing import List, Optional, Tuple

from .errors import Cancelled, InputError
from .options import (BIAS_CORRECTION, METHODS, MODALITIES, PRECISIONS, PRESETS, SLICE_AXES,
                      DenoiseOptions)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130
# Starts the one stderr line of every error the command reports (the Slicer panel's
# process reader looks for it).
ERROR_PREFIX = "nsn2n: error:"


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nsn2n", description="Self-supervised denoising of one medical image volume.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("denoise", help="denoise one volume or ultrasound image/cine "
                              "(NIfTI, NRRD, MetaImage, DICOM file or series folder)")
    run.add_argument("input", help="input file, or a folder holding one DICOM series")
    run.add_argument("output", help="output file: .nii, .nii.gz, .nrrd, .nhdr, .mha or "
                     ".mhd; or, for a DICOM series input, a new or empty folder (a path "
                     "without an extension): the result as a derived DICOM series of the "
                     "same patient and study")
    # dest names are DenoiseOptions' field names: the options are built from them as they are
    run.add_argument("--method", default="auto", choices=METHODS,
                     help="auto: series for a 4-D series of volumes, speckle2self for "
                     "ultrasound (modality US), else nsn2n; speckle2self also takes 2-D "
                     "images, cines and RGB (converted to gray)")
    run.add_argument("--preset", default="balanced", choices=PRESETS)
    run.add_argument("--steps", type=int, help="training steps (overrides the preset)")
    run.add_argument("--max-minutes", type=float, help="time budget for the whole run: "
                     "training stops early enough to finish within it; results then "
                     "depend on machine speed")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    run.add_argument("--precision", default="auto", choices=PRECISIONS,
                     help="auto: bf16 where the hardware runs it natively, fp16 on other "
                     "CUDA GPUs, else fp32; fp32 forces full precision on any machine")
    run.add_argument("--slice-axis", default="auto", choices=SLICE_AXES,
                     help="array axis across slices or frames: auto (largest spacing; "
                     "ties and single images: axis 0), 0, 1 or 2")
    run.add_argument("--series-stride", type=int, default=1,
                     help="series only: volumes of the same kind are this many apart "
                     "(2 for ASL label/control pairs)")
    run.add_argument("--modality", choices=MODALITIES,
                     help="override the modality read from the file or guessed from HU")
    run.add_argument("--bias-correction", default="auto", nargs="?", const="on",
                     choices=tuple(BIAS_CORRECTION),
                     help="the Rician bias correction of magnitude MRI: auto (MR with a "
                     "Rayleigh background), on (also the flag alone) or off")
    run.add_argument("--preview", help="also write a before/after PNG here")
    run.add_argument("--progress", default="auto", choices=["auto", "bar", "json", "none"],
                     help="bar on a terminal (auto), JSON lines on stdout, or nothing")
    run.add_argument("--report", help="write the run's report (JSON) here")
    return parser


def options_from(args: argparse.Namespace) -> DenoiseOptions:
    return DenoiseOptions(**{field.name: getattr(args, field.name)
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
    from .dicom import (check_dicom_volume, check_output_folder, is_dicom_output, source_tags,
                        write_derived_series)
    from .intensity import to_gray
    from .pipeline import budget_warning, denoise, estimate, validate
    from .runtime import Progress
    from .preview import check_png_path, montage, write_png
    from .volume import check_output_path, check_writable_folder, read_volume, write_volume

    options = options_from(args)
    validate(options)
    as_dicom = is_dicom_output(args.output)
    if as_dicom:
        check_output_folder(args.output, args.input)
    else:
        check_output_path(args.output, args.input)
    if args.preview:
        check_png_path(args.preview)
    if args.report:
        check_writable_folder(args.report)
    volume = read_volume(args.input)
    if as_dicom:
        check_dicom_volume(volume, result=False)  # refused now, not after the run
    reporter = _Reporter(args.progress)
    estimated = estimate(volume, options)
    if reporter.mode == "json":  # a progress line whose time left is the whole estimate
        reporter(Progress("estimate", 0, 0, float("nan"), 0.0, estimated.seconds))
    elif reporter.mode == "bar":
        print(f"nsn2n: this run should take about {duration(estimated.seconds)}",
              file=sys.stderr)
    shortfall = budget_warning(estimated, options)
    if shortfall and reporter.mode != "json":  # the panel gets it in the report
        print(f"nsn2n: {shortfall}", file=sys.stderr)
    try:  # Ctrl-C raises KeyboardInterrupt here, before anything is written
        result, report = denoise(volume, options, progress=reporter, estimated=estimated)
    finally:
        reporter.close()
    if as_dicom:
        write_derived_series(result, args.output, source_tags(args.input),
                             *derived_descriptions(report))
    else:
        write_volume(result, args.output)
    if args.preview:
        before, after = volume.array, result.array
        if volume.dimension == 4:  # a series: its middle volume
            before, after = before[len(before) // 2], after[len(after) // 2]
        if volume.components != 1:
            before = to_gray(before)
        write_png(args.preview, montage(before, after, report.slice_axis))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report.to_dict(), handle, indent=2, default=str)
    if reporter.mode != "json":
        detail = report.summary()
        print(f"wrote {args.output} ({report.method}, {report.steps} steps on "
              f"{report.device}, {report.total_seconds:.0f} s{'; ' + detail if detail else ''})",
              file=sys.stderr)
    if report.warning:
        logging.getLogger("nsn2n").warning("warning: %s", report.warning)
    return EXIT_OK


def derived_descriptions(report) -> Tuple[str, str]:
    """The series description and the derivation description of a DICOM result."""
    from . import __version__

    return (f"denoised {report.method} {report.preset}",
            f"Denoised by NSN2NDenoise {__version__}: method {report.method}, preset "
            f"{report.preset}, {report.steps} training steps, seed {report.seed}, "
            f"{report.device} {report.precision}. Self-supervised: trained on this series "
            "only; not for diagnosis without comparing with the original series.")


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
            return _denoise(args)
    except InputError as exc:
        print(f"{ERROR_PREFIX} {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        print("nsn2n: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except MemoryError:
        print(f"{ERROR_PREFIX} out of memory", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:  # torch reports GPU out-of-memory as a RuntimeError
        if "out of memory" not in str(exc).lower():
            raise
        print(f"{ERROR_PREFIX} the device ran out of memory; try --device cpu",
              file=sys.stderr)
        return EXIT_FAILED
