"""``python -m benchmarks SUBCOMMAND``: see ``benchmarks/__init__.py``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .report import DOCS
from .speed import CASES as SPEED_CASES

EPILOG = """examples:
  python -m benchmarks synthetic --presets fast,balanced --docs docs/benchmarks.md
  python -m benchmarks synthetic --cases mri5 --no-bm4d --presets fast
  python -m benchmarks ablation           # what each addition to the paper is worth
  python -m benchmarks low-noise          # nearly clean volumes: never worse than the input
  python -m benchmarks loss-terms         # balanced with and without L_RC + L_IC, 3 seeds
  python -m benchmarks memory             # peak memory for a 512x512x300 int16 CT
  python -m benchmarks memory --slices 600   # the largest volume the README promises
  python -m benchmarks merge a/synthetic.json b/synthetic.json --docs docs/benchmarks.md
  python -m benchmarks real               # real acquisitions with repeats (shared/realdata)
  python -m benchmarks noise              # the noise estimate where sigma is known (1-2 min)
  python -m benchmarks speed              # presets x precision paths: time, estimate, memory
  python -m benchmarks batch              # nsn2n batch: cases/min, serial vs local cluster
  python -m benchmarks transfer           # a saved network fine-tuned vs from scratch
  python -m benchmarks cancel             # how fast a cancel stops a run on 512 px slices
  python -m benchmarks ultrasound         # Speckle2Self, simulated speckle and real files
  python -m benchmarks gpu                # a CUDA GPU against its machine's CPU, real sets
  python -m benchmarks gpu --pack real.npz   # the real sets as arrays, for a GPU machine
  python -m benchmarks pretrain-speckle2self FILE   # remake the shipped weights
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="kind", required=True)

    def command(name: str, help_text: str, docs: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--out", default="bench-out", help="folder for tables and pictures")
        sub.add_argument("--seed", type=int, default=0)
        if docs:
            sub.add_argument("--docs", nargs="?", const=str(DOCS),
                             help=f"write the table into this file's section (default {DOCS})")
        return sub

    for name, help_text in (
            ("synthetic", "every method on simulated MRI (Rician) and CT (FBP) volumes"),
            ("ablation", "each addition to the paper's recipe, at equal training time"),
            ("low-noise", "nearly clean volumes: is the output better than the input?"),
            ("loss-terms", "balanced with and without L_RC + L_IC over several seeds")):
        sub = command(name, help_text)
        sub.add_argument("--cases", help="comma-separated: mri1, mri5, mri10, ct1e4, ct5e3, "
                         "ct1e6 (default: the kind's own)")
        sub.add_argument("--presets", default="fast,balanced,best")
        sub.add_argument("--no-bm4d", action="store_true", help="skip BM4D (slow)")
        sub.add_argument("--learned-only", action="store_true",
                         help="skip the classical filters (rows from an earlier run)")
        sub.add_argument("--seconds", type=float, default=60.0,
                         help="training time of each ablation row")
        sub.add_argument("--seeds", default="0,1,2", help="seeds of loss-terms")
    merge = command("merge", "one table from several synthetic runs (later rows win)")
    merge.add_argument("files", nargs="+", metavar="JSON")
    memory = command("memory", "peak memory for a 512x512x300 int16 CT (in a child "
                     "process)", docs=False)
    memory.add_argument("--slices", type=int, default=300)
    real = command("real", "the product and classical filters on real acquisitions with "
                   "repeats (shared/realdata)")
    real.add_argument("--data", default=None, help="folder of the real sets (default: "
                      "shared/realdata beside the repository)")
    real.add_argument("--presets", default="fast,balanced")
    real.add_argument("--no-bm4d", action="store_true", help="skip BM4D (slow)")
    real.add_argument("--product-only", action="store_true", help="skip every filter")
    real.add_argument("--no-series", action="store_true",
                      help="skip the series section (the multi-volume method)")
    noise = command("noise", "the noise estimate and its test for noise correlated across "
                    "slices, where sigma is known (synthetic, real repeats)")
    noise.add_argument("--data", default=None, help="folder of the real sets")
    transfer = command("transfer", "train once, apply to many: a saved network fine-tuned "
                       "on the other volumes of a protocol against training from scratch")
    transfer.add_argument("--preset", default="balanced")
    transfer.add_argument("--data", default=None, help="folder of the real sets")
    many = command("batch", "nsn2n batch: cases per minute one at a time and on a local "
                   "Dask cluster (real ASL volumes, many tiny cases)")
    many.add_argument("--cases", type=int, default=12, help="ASL volumes in the cohort")
    many.add_argument("--tiny", type=int, default=40, help="tiny cases")
    many.add_argument("--data", default=None, help="folder of the real sets")
    speed = command("speed", "every preset on the fp32 (and native bf16) path: time against "
                    "BM4D's, the estimate, each phase, peak memory, quality")
    speed.add_argument("--cases", default=",".join(SPEED_CASES))
    speed.add_argument("--presets", default="fast,balanced,best")
    speed.add_argument("--precisions", help="comma-separated (default: fp32, and bf16 "
                       "where the CPU runs it natively)")
    speed.add_argument("--no-bm4d", action="store_true", help="skip BM4D")
    speed.add_argument("--data", default=None, help="folder of the real sets")
    one = commands.add_parser("speed-run", help="one run of the speed benchmark (its child "
                              "process): prints its row as JSON")
    one.add_argument("--case", required=True, choices=SPEED_CASES)
    one.add_argument("--preset", required=True)
    one.add_argument("--precision", required=True)
    one.add_argument("--seed", type=int, default=0)
    one.add_argument("--data", default=None)
    one.add_argument("--max-minutes", type=float, default=None)
    cancel = command("cancel", "how fast a cancel stops a run, at moments spread over it")
    cancel.add_argument("--shape", default="512x512x24", help="x, y, z of the CT-like volume")
    cancel.add_argument("--preset", default="balanced")
    cancel.add_argument("--points", type=int, default=12, help="cancels spread over a run")
    gpu = command("gpu", "the product on a CUDA GPU against the same machine's CPU: real "
                  "sets, series, 512 px CT-like volumes")
    gpu.add_argument("--data", default=None, help="folder of the real sets")
    gpu.add_argument("--arrays", help="the real sets packed by --pack (no SimpleITK needed)")
    gpu.add_argument("--pack", metavar="FILE", help="only pack the real sets into FILE")
    gpu.add_argument("--presets", default="fast,balanced,best")
    ultrasound = command("ultrasound", "Speckle2Self on simulated speckle and real files")
    ultrasound.add_argument("--cases", default="us-fine,us-coarse")
    ultrasound.add_argument("--preset", default="balanced")
    ultrasound.add_argument("--no-bm3d", action="store_true", help="skip BM3D")
    ultrasound.add_argument("--from-scratch", action="store_true",
                            help="add Speckle2Self trained without pretraining")
    ultrasound.add_argument("--no-real", action="store_true",
                            help="skip the real pydicom-data files")
    pretrain = command("pretrain-speckle2self", "remake the shipped Speckle2Self weights "
                       "(self-supervised, on random simulated speckle)", docs=False)
    pretrain.add_argument("file")
    pretrain.add_argument("--steps", type=int, default=3000)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.kind in ("synthetic", "ablation", "low-noise", "loss-terms"):
        from .synthetic import run
    elif args.kind == "merge":
        from .synthetic import merge as run
    elif args.kind == "memory":
        from .synthetic import memory as run
    elif args.kind == "real":
        from .realdata import run
    elif args.kind == "noise":
        from .noise import run
    elif args.kind == "transfer":
        from .transfer import run
    elif args.kind == "batch":
        from .batch import run
    elif args.kind == "speed":
        from .speed import run
    elif args.kind == "speed-run":
        from .speed import child as run
    elif args.kind == "cancel":
        from .cancel import run
    elif args.kind == "gpu":
        from .gpu import run
    elif args.kind == "ultrasound":
        from .ultrasound import run
    else:
        from .pretrain import run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
