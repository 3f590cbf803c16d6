"""``nsn2n bench``: every method on the same arrays in the same process, one table.

    nsn2n bench                      # every case and method (40 min on 2 cores without best)
    nsn2n bench --cases mri5 --no-bm4d --presets fast
    nsn2n bench --ablation           # what each addition to the paper's recipe is worth
    nsn2n bench --low-noise          # nearly clean volumes: never worse than the input
    nsn2n bench --loss-terms         # balanced with and without L_RC + L_IC, three seeds
    nsn2n bench --memory             # peak memory for a 512x512x300 int16 CT
    nsn2n bench --merge a.json b.json  # one table from two runs' rows (b's rows win)
    nsn2n bench --ultrasound         # Speckle2Self on simulated speckle and real files
    nsn2n bench --pretrain-speckle2self FILE  # remake the shipped Speckle2Self weights

Quality: PSNR inside the head/body mask and over the whole volume, SSIM over the whole
volume (data range = clean max - clean min).  For MRI every output is compared after the
Rician bias correction where that helps it (NS-N2N corrects with its own sigma estimate;
classical filters may use the true sigma).  Times are wall seconds on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from .. import intensity
from ..methods.nsn2n import NSN2NConfig, config_for
from ..metrics import psnr, ssim
from ..pipeline import DenoiseOptions, denoise
from ..preview import montage, write_png
from ..volume import Volume
from . import baselines, targets
from .data import BenchCase, cases



@dataclasses.dataclass
class Row:
    case: str
    method: str
    psnr_in: float
    psnr_all: float
    ssim_all: float
    seconds: float
    note: str = ""


def score(case: BenchCase, method: str, output: np.ndarray, seconds: float,
          note: str = "", allow_rician_fix: bool = False) -> Row:
    if allow_rician_fix and case.modality == "MR":
        fixed = intensity.rician_bias_correct(output, case.sigma)
        if psnr(fixed, case.clean, case.mask) >= psnr(output, case.clean, case.mask):
            output, note = fixed, (note + ", " if note else "") + "Rician-corrected"
    return Row(case.name, method, psnr(output, case.clean, case.mask),
               psnr(output, case.clean), ssim(output, case.clean), seconds, note)


def run_nsn2n(case: BenchCase, options: DenoiseOptions, config: Optional[NSN2NConfig] = None,
              reference: Optional[np.ndarray] = None):
    started = time.perf_counter()
    result, report = denoise(Volume(case.noisy, case.geometry, case.modality), options,
                             method_config=config, reference=reference)
    return result.array, time.perf_counter() - started, report


def classical_rows(case: BenchCase, with_bm4d: bool, log) -> List[Row]:
    rows = []
    spacing = case.geometry.spacing
    out, params, seconds = baselines.best_of(
        lambda conductance, iterations: baselines.curvature_anisotropic_diffusion(
            case.noisy, spacing, conductance, iterations),
        [dict(conductance=c, iterations=i) for c in (0.5, 1.0, 2.0)
         for i in (10, 20, 40)],
        case.clean, case.mask)
    rows.append(score(case, targets.DIFFUSION, out, seconds,
                      f"k={params['conductance']:g}, {params['iterations']} it",
                      allow_rician_fix=True))
    log(rows[-1])
    out, params, seconds = baselines.best_of(
        lambda strength: baselines.non_local_means(case.noisy, case.sigma, strength),
        [dict(strength=s) for s in (0.5, 0.8)], case.clean, case.mask)
    rows.append(score(case, targets.NLM, out, seconds,
                      f"h={params['strength']:g} sigma", allow_rician_fix=True))
    log(rows[-1])
    if with_bm4d:
        started = time.perf_counter()
        out = baselines.bm4d(case.noisy, case.sigma)
        rows.append(score(case, targets.BM4D, out, time.perf_counter() - started,
                          allow_rician_fix=True))
        log(rows[-1])
    return rows


def _recoveries(report) -> str:
    """Divergence recoveries (training.py) change a run's course: the table says so."""
    count = report.get("recoveries", 0)
    return f", {count} divergence recover{'y' if count == 1 else 'ies'}" if count else ""


def learned_rows(case: BenchCase, presets: List[str], seed: int, log, picture_dir: Path):
    rows = []
    balanced_seconds = None
    for preset in presets:
        out, seconds, report = run_nsn2n(case, DenoiseOptions(preset=preset, seed=seed))
        rows.append(score(case, targets.preset_method(preset), out, seconds,
                          f"{report['steps']} steps, matched {report['matched_fraction']:.2f}"
                          + _recoveries(report)))
        log(rows[-1])
        if preset == "balanced":
            balanced_seconds = report["train_seconds"]
            picture = picture_dir / f"bench_{case.name.replace(' ', '_').replace('%', '')}.png"
            write_png(picture, montage(case.noisy, out))
    if balanced_seconds is None:
        return rows
    budget = dict(steps=10 ** 6, max_seconds=balanced_seconds, seed=seed)
    plain = NSN2NConfig(use_mask=False, lambda_rc=0.0, lambda_ic=0.0, run_length=2,
                        average_tail=0.0, tta=1, guard_factor=0.0, wiener_stride=0,
                        nonlocal_strength=0.0, **budget)
    out, seconds, report = run_nsn2n(case, DenoiseOptions(seed=seed), plain)
    rows.append(score(case, targets.PLAIN, out, seconds,
                      f"same training time, {report['steps']} steps" + _recoveries(report)))
    log(rows[-1])
    # The network alone, without the residual guard or the refinement stages: trained on
    # the clean magnitude, it removes the Rician floor in air, and these stages take their
    # values from the noisy magnitude, floor included (measured on MRI 5 %: whole-volume
    # SSIM 0.505 with the guard).  No Rician bias to correct either.
    supervised = dataclasses.replace(config_for("balanced"), guard_factor=0.0,
                                     wiener_stride=0, nonlocal_strength=0.0, **budget)
    out, seconds, report = run_nsn2n(case, DenoiseOptions(seed=seed, bias_correction=False),
                                     supervised, case.clean)
    rows.append(score(case, targets.SUPERVISED, out, seconds,
                      f"same training time, {report['steps']} steps" + _recoveries(report)))
    log(rows[-1])
    return rows


ABLATIONS = [
    ("paper recipe: pairs (K=2), last weights, no TTA",
     dict(run_length=2, average_tail=0.0, tta=1, wiener_stride=0, nonlocal_strength=0.0)),
    ("+ runs of K=4 slices",
     dict(average_tail=0.0, tta=1, wiener_stride=0, nonlocal_strength=0.0)),
    ("+ weights averaged over the last quarter",
     dict(tta=1, wiener_stride=0, nonlocal_strength=0.0)),
    ("+ 8-fold test-time augmentation", dict(wiener_stride=0, nonlocal_strength=0.0)),
    ("+ the empirical Wiener stage", dict(nonlocal_strength=0.0)),
    ("+ guided non-local means, averaged with it (the product)", dict()),
    ("product without the mask (W = 1)", dict(use_mask=False)),
    ("product without L_RC and L_IC", dict(lambda_rc=0.0, lambda_ic=0.0)),
    ("product without the residual guard", dict(guard_factor=0.0)),
    ("product with the paper's fixed tau (no cap at 2x the noise floor)", dict(tau_cap=None)),
]


LOW_NOISE = [
    (targets.FAST, "fast", dict()),
    (targets.BALANCED, "balanced", dict()),
    ("`balanced` without the Wiener stage", "balanced", dict(wiener_stride=0)),
    ("`balanced` without guided non-local means", "balanced", dict(nonlocal_strength=0.0)),
    ("`balanced` without the residual guard", "balanced", dict(guard_factor=0.0)),
    # The product as it was before the tau cap, the guard and the two refinement stages.
    ("`balanced` with the paper's fixed tau, no guard, no refinement stages", "balanced",
     dict(guard_factor=0.0, tau_cap=None, wiener_stride=0, nonlocal_strength=0.0)),
]


def config_row(case: BenchCase, name: str, config: NSN2NConfig,
               note: Callable[[Dict], str], log) -> Row:
    """One NS-N2N run with ``config`` (and its seed), scored, logged; ``note`` reads the
    run's report."""
    out, took, report = run_nsn2n(case, DenoiseOptions(seed=config.seed), config)
    row = score(case, name, out, took, note(report))
    log(row)
    return row


def low_noise_rows(case: BenchCase, seed: int, log) -> List[Row]:
    """On a nearly clean volume the only question is: is the output better than the input?"""
    def note(report):
        return (f"tau {report['tau']:.4f}, matched {report['matched_fraction']:.2f}, "
                f"guard gave back {100 * report['guard_returned']:.0f} %")

    return [config_row(case, name, dataclasses.replace(config_for(preset), seed=seed,
                                                       **changes), note, log)
            for name, preset, changes in LOW_NOISE]


def ablation_rows(case: BenchCase, seconds: float, seed: int, log) -> List[Row]:
    return [config_row(case, name, dataclasses.replace(config_for("balanced"), steps=10 ** 6,
                                                       max_seconds=seconds, seed=seed,
                                                       **changes),
                       lambda report: f"{report['steps']} steps", log)
            for name, changes in ABLATIONS]


LOSS_TERMS = [
    ("`balanced` (lambda_RC 0.5, lambda_IC 1.0)", dict()),
    ("`balanced` without L_RC and L_IC", dict(lambda_rc=0.0, lambda_ic=0.0)),
]


def loss_term_rows(case: BenchCase, seeds: List[int], log) -> List[Row]:
    """``balanced`` as shipped and without L_RC and L_IC, over several seeds.  Step-budgeted,
    unlike the ablation: every row trains the preset's steps on the same schedule, so the
    spread between seeds is the only noise."""
    return [config_row(case, name, dataclasses.replace(config_for("balanced"), seed=seed,
                                                       **changes),
                       lambda report, seed=seed: f"seed {seed}, {report['steps']} steps", log)
            for seed in seeds for name, changes in LOSS_TERMS]


def memory_check(slices: int = 300, size: int = 512) -> Dict:
    """Denoise a synthetic 512x512x300 int16 CT in a child process; report its peak RSS."""
    code = (
        "import numpy as np\n"
        "from nsn2n.pipeline import DenoiseOptions, denoise\n"
        "from nsn2n.volume import Volume, Geometry\n"
        f"rng = np.random.default_rng(0); shape = ({slices}, {size}, {size})\n"
        "z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]\n"
        "body = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < (0.4 * shape[1]) ** 2\n"
        "hu = np.where(body, 40, -1000) + rng.normal(0, 30, shape)\n"
        "vol = Volume(hu.astype(np.int16), Geometry.identity((0.7, 0.7, 1.0)))\n"
        "del hu\n"
        "denoise(vol, DenoiseOptions(preset='fast', steps=20))\n")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dict(shape=f"{size}x{size}x{slices} int16", peak_gib=peak_kib / 2 ** 20,
                seconds=time.perf_counter() - started)


def table(rows: List[Row]) -> str:
    lines = ["| case | method | PSNR in mask (dB) | PSNR whole (dB) | SSIM whole | time (s) | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.case} | {r.method} | {r.psnr_in:.2f} | {r.psnr_all:.2f} | "
                     f"{r.ssim_all:.3f} | {r.seconds:.1f} | {r.note} |")
    return "\n".join(lines)


def merge_rows(runs: List[List[Row]]) -> List[Row]:
    """One list of rows from several runs: a row of a later run replaces the row of the
    same case and method from an earlier one, in place; new rows go after their case."""
    merged: List[Row] = []
    for rows in runs:
        for row in rows:
            same = [i for i, r in enumerate(merged)
                    if (r.case, r.method) == (row.case, row.method)]
            of_case = [i for i, r in enumerate(merged) if r.case == row.case]
            if same:
                merged[same[0]] = row
            elif of_case:
                merged.insert(of_case[-1] + 1, row)
            else:
                merged.append(row)
    return merged


def benchmark_text(rows: List[Row], provenance: str) -> str:
    judged = targets.target_table(rows)
    text = f"{table(rows)}\n\n{provenance}"
    if judged:
        text += ("\n\nIssue 2's targets, judged by `bench/targets.py` from the rows above "
                 "(differences inside the head/body mask):\n\n" + judged)
    return text


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        name = next(line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
        cpu = name
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def update_readme(readme: Path, kind: str, text: str) -> None:
    """Replace the text between ``<!-- KIND:start -->`` and ``<!-- KIND:end -->``."""
    start, end = f"<!-- {kind}:start -->", f"<!-- {kind}:end -->"
    content = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        raise SystemExit(f"{readme} has no {start} ... {end} section")
    readme.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content),
                      encoding="utf-8")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="nsn2n bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", help="default: mri5,mri10,ct1e4,ct5e3; with "
                        "--low-noise: mri1,ct1e6")
    parser.add_argument("--presets", default="fast,balanced,best")
    parser.add_argument("--no-bm4d", action="store_true", help="skip BM4D (slow)")
    parser.add_argument("--learned-only", action="store_true",
                        help="skip the classical filters (rows from an earlier run)")
    parser.add_argument("--ablation", action="store_true",
                        help="ablate the additions to the paper's recipe instead")
    parser.add_argument("--ablation-seconds", type=float, default=60.0)
    parser.add_argument("--low-noise", action="store_true",
                        help="nearly clean volumes: is the output better than the input?")
    parser.add_argument("--loss-terms", action="store_true",
                        help="balanced with and without L_RC + L_IC over --seeds")
    parser.add_argument("--seeds", default="0,1,2", help="seeds for --loss-terms")
    parser.add_argument("--memory", action="store_true", help="only the memory check")
    parser.add_argument("--ultrasound", action="store_true",
                        help="the ultrasound benchmark (Speckle2Self) instead")
    parser.add_argument("--us-cases", default="us-fine,us-coarse")
    parser.add_argument("--no-bm3d", action="store_true", help="skip BM3D (ultrasound)")
    parser.add_argument("--us-from-scratch", action="store_true",
                        help="add Speckle2Self trained without pretraining (ultrasound)")
    parser.add_argument("--no-real", action="store_true",
                        help="skip the real pydicom-data files (ultrasound)")
    parser.add_argument("--pretrain-speckle2self", metavar="FILE",
                        help="no benchmark: remake the shipped Speckle2Self weights into FILE "
                        "(self-supervised, on random simulated speckle)")
    parser.add_argument("--pretrain-steps", type=int, default=3000)
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="no run: one benchmark table from these benchmark.json files, "
                        "rows of later files replacing the same case and method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-out", help="folder for tables and pictures")
    parser.add_argument("--readme", help="write the table into this README's bench section")
    args = parser.parse_args(argv)

    if args.pretrain_speckle2self:
        from .pretrain import main as pretrain_main

        return pretrain_main(args.pretrain_speckle2self, args.pretrain_steps, args.seed)
    if args.merge:
        runs = [[Row(**r) for r in json.loads(Path(f).read_text(encoding="utf-8"))]
                for f in args.merge]
        text = benchmark_text(merge_rows(runs), "Rows merged by `nsn2n bench --merge` from "
                              + ", then ".join("/".join(Path(f).parts[-2:]) for f in args.merge)
                              + ".")
        print(text)
        if args.readme:
            update_readme(Path(args.readme), "benchmark", text)
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.memory:
        result = memory_check()
        print(json.dumps(result))
        (out / "memory.json").write_text(json.dumps(result))
        return 0

    if args.ultrasound:
        from .ultrasound import main as ultrasound_main

        return ultrasound_main(args, out, started)
    rows: List[Row] = []

    def log(row: Row) -> None:
        print(f"{row.case:8s} {row.method:50s} in {row.psnr_in:6.2f}  all {row.psnr_all:6.2f}  "
              f"ssim {row.ssim_all:.3f}  {row.seconds:7.1f}s  {row.note}", flush=True)

    names = args.cases or ("mri1,ct1e6" if args.low_noise else "mri5,mri10,ct1e4,ct5e3")
    for name, case in cases(tuple(names.split(","))):
        rows.append(score(case, "noisy input", case.noisy, 0.0))
        log(rows[-1])
        if args.low_noise:
            rows += low_noise_rows(case, args.seed, log)
            continue
        if args.loss_terms:
            rows += loss_term_rows(case, [int(s) for s in args.seeds.split(",")], log)
            continue
        if args.ablation:
            rows += ablation_rows(case, args.ablation_seconds, args.seed, log)
            continue
        if not args.learned_only:
            rows += classical_rows(case, not args.no_bm4d, log)
        rows += learned_rows(case, args.presets.split(","), args.seed, log, out)

    kind = ("lownoise" if args.low_noise else "lossterms" if args.loss_terms
            else "ablation" if args.ablation else "benchmark")
    provenance = (f"Machine: {machine()}. Whole run: "
                  f"{(time.perf_counter() - started) / 60:.0f} min.")
    text = (benchmark_text(rows, provenance) if kind == "benchmark"
            else f"{table(rows)}\n\n{provenance}")
    print("\n" + text)
    (out / f"{kind}.md").write_text(text + "\n", encoding="utf-8")
    (out / f"{kind}.json").write_text(json.dumps([dataclasses.asdict(r) for r in rows],
                                                 indent=1), encoding="utf-8")
    if args.readme:
        update_readme(Path(args.readme), kind, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
