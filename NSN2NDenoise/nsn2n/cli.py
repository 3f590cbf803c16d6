"""The ``nsn2n`` command.

``nsn2n denoise INPUT OUTPUT [options]`` denoises one volume; ``nsn2n bench`` runs the
benchmark.  Bad input exits with status 2 and one line on stderr, and OUTPUT is not
created; a cancelled run (Ctrl-C) exits with 130 and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import List, Optional

from .errors import Cancelled, InputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 130


def _axis(text: str):
    if text == "auto":
        return text
    if text in ("0", "1", "2"):
        return int(text)
    raise argparse.ArgumentTypeError("must be auto, 0, 1 or 2")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="nsn2n", description="Self-supervised denoising of one medical image volume.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("denoise", help="denoise one volume or ultrasound image/cine "
                              "(NIfTI, NRRD, MetaImage, DICOM file or series folder)")
    run.add_argument("input", help="input file, or a folder holding one DICOM series")
    run.add_argument("output", help="output file: .nii, .nii.gz, .nrrd, .nhdr, .mha or .mhd")
    run.add_argument("--method", default="auto", choices=["auto", "nsn2n", "speckle2self"],
                     help="auto: speckle2self for ultrasound (modality US), else nsn2n; "
                     "speckle2self also takes 2-D images, cines and RGB (converted to gray)")
    run.add_argument("--preset", default="balanced", choices=["fast", "balanced", "best"])
    run.add_argument("--steps", type=int, help="training iterations (overrides the preset)")
    run.add_argument("--max-minutes", type=float, help="cap on training time; results then "
                     "depend on machine speed")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    run.add_argument("--slice-axis", type=_axis, default="auto",
                     help="array axis across slices or frames: auto (largest spacing; "
                     "ties and single images: axis 0), 0, 1 or 2")
    run.add_argument("--modality", choices=["CT", "MR", "US"],
                     help="override the modality read from the file or guessed from HU")
    bias = run.add_mutually_exclusive_group()
    bias.add_argument("--bias-correction", dest="bias_correction", action="store_true",
                      default=None, help="force the Rician bias correction on")
    bias.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                      help="force the Rician bias correction off")
    run.add_argument("--preview", help="also write a before/after PNG here")
    run.add_argument("--progress", default="auto", choices=["auto", "bar", "json", "none"],
                     help="bar on a terminal (auto), JSON lines on stdout, or nothing")
    run.add_argument("--report", help="write the run's report (JSON) here")

    # Listed for --help only: main() hands "bench ..." to the benchmark's own parser.
    commands.add_parser("bench", help="run the benchmark (needs the bench extra); "
                        "see nsn2n bench --help")
    return parser


class _Reporter:
    """Turns engine progress into a terminal bar or JSON lines."""

    def __init__(self, mode: str):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        self.mode = mode
        self._last = 0.0

    def __call__(self, p) -> None:
        if self.mode == "json":
            print(json.dumps({"phase": p.phase, "step": p.step, "total": p.total,
                              "loss": None if p.loss != p.loss else round(p.loss, 6),
                              "elapsed": round(p.elapsed, 2),
                              "remaining": None if p.remaining != p.remaining
                              else round(p.remaining, 1)}), flush=True)
        elif self.mode == "bar":
            now = time.monotonic()
            if now - self._last < 0.2 and p.step < p.total:
                return
            self._last = now
            done = min(1.0, p.step / max(p.total, 1))
            bar = "#" * int(30 * done) + "-" * (30 - int(30 * done))
            left = "" if p.remaining != p.remaining else f" ~{p.remaining:.0f}s left"
            loss = "" if p.loss != p.loss else f" loss {p.loss:.5f}"
            sys.stderr.write(f"\r{p.phase:8s} [{bar}] {p.step}/{p.total}{loss}{left}   ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.mode == "bar":
            sys.stderr.write("\n")


def _denoise(args) -> int:
    from .pipeline import DenoiseOptions, denoise, to_gray
    from .preview import check_png_path, montage, write_png
    from .volume import check_output_path, check_writable_folder, read_volume, write_volume

    options = DenoiseOptions(method=args.method, preset=args.preset, steps=args.steps,
                             max_minutes=args.max_minutes, seed=args.seed, device=args.device,
                             slice_axis=args.slice_axis, modality=args.modality,
                             bias_correction=args.bias_correction)
    check_output_path(args.output, args.input)
    if args.preview:
        check_png_path(args.preview)
    if args.report:
        check_writable_folder(args.report)
    volume = read_volume(args.input)
    reporter = _Reporter(args.progress)
    try:  # Ctrl-C raises KeyboardInterrupt here, before anything is written
        result, report = denoise(volume, options, progress=reporter)
    finally:
        reporter.close()
    write_volume(result, args.output)
    if args.preview:
        before = volume.array if volume.components == 1 else to_gray(volume.array)
        write_png(args.preview, montage(before, result.array, report["slice_axis"]))
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
    if reporter.mode != "json":
        detail = (f"; {100 * report['matched_fraction']:.0f} % of pixels matched between "
                  "slices" if "matched_fraction" in report else "")
        print(f"wrote {args.output} ({report['method']}, {report['steps']} steps on "
              f"{report['device']}, {report['total_seconds']:.0f} s{detail})", file=sys.stderr)
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from .bench.run import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="nsn2n: %(message)s")
    try:
        return _denoise(args)
    except InputError as exc:
        print(f"nsn2n: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (Cancelled, KeyboardInterrupt):
        print("nsn2n: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except MemoryError:
        print("nsn2n: error: out of memory", file=sys.stderr)
        return EXIT_FAILED
    except RuntimeError as exc:  # torch reports GPU out-of-memory as a RuntimeError
        if "out of memory" not in str(exc).lower():
            raise
        print("nsn2n: error: the device ran out of memory; try --device cpu", file=sys.stderr)
        return EXIT_FAILED
