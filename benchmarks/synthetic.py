"""The synthetic benchmark: every method on the same simulated MRI and CT volumes (exact
clean references, ``Testing/simulators/volumes.py``), in the same process, one table.

Quality: PSNR inside the head/body mask and over the whole volume, SSIM over the whole
volume (data range = clean max - clean min).  For MRI every output is compared after the
Rician bias correction where that helps it (NS-N2N corrects with its own sigma estimate;
classical filters may use the true sigma).  Times are wall seconds on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from nsn2n import intensity
from nsn2n.methods.nsn2n import NSN2NConfig, config_for
from nsn2n.metrics import psnr, ssim
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.preview import montage, write_png
from nsn2n.volume import Volume
from Testing.simulators.volumes import BenchCase, cases

from . import baselines, targets
from .report import machine, markdown_table, save

# Every refinement stage after the network off: the network's output as it is.
STAGES_OFF = dict(wiener_stride=0, nonlocal_strength=0.0, block_stride=0)


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
    count = report.recoveries
    return f", {count} divergence recover{'y' if count == 1 else 'ies'}" if count else ""


def learned_rows(case: BenchCase, presets: List[str], seed: int, log, picture_dir: Path):
    rows = []
    balanced_seconds = None
    for preset in presets:
        out, seconds, report = run_nsn2n(case, DenoiseOptions(preset=preset, seed=seed))
        rows.append(score(case, targets.preset_method(preset), out, seconds,
                          f"{report.steps} steps, matched {report.matched_fraction:.2f}"
                          + _recoveries(report)))
        log(rows[-1])
        if preset == "balanced":
            balanced_seconds = report.train_seconds
            picture = picture_dir / f"bench_{case.name.replace(' ', '_').replace('%', '')}.png"
            write_png(picture, montage(case.noisy, out))
    if balanced_seconds is None:
        return rows
    budget = dict(steps=10 ** 6, max_seconds=balanced_seconds, seed=seed)
    plain = NSN2NConfig(use_mask=False, lambda_rc=0.0, lambda_ic=0.0, run_length=2,
                        average_tail=0.0, tta=1, guard_factor=0.0, **STAGES_OFF, **budget)
    out, seconds, report = run_nsn2n(case, DenoiseOptions(seed=seed), plain)
    rows.append(score(case, targets.PLAIN, out, seconds,
                      f"same training time, {report.steps} steps" + _recoveries(report)))
    log(rows[-1])
    # The network alone, without the residual guard or the refinement stages: trained on
    # the clean magnitude, it removes the Rician floor in air, and these stages take their
    # values from the noisy magnitude, floor included (measured on MRI 5 %: whole-volume
    # SSIM 0.505 with the guard).  No Rician bias to correct either.
    supervised = dataclasses.replace(config_for("balanced"), guard_factor=0.0,
                                     **STAGES_OFF, **budget)
    out, seconds, report = run_nsn2n(case, DenoiseOptions(seed=seed, bias_correction=False),
                                     supervised, case.clean)
    rows.append(score(case, targets.SUPERVISED, out, seconds,
                      f"same training time, {report.steps} steps" + _recoveries(report)))
    log(rows[-1])
    return rows


ABLATIONS = [
    ("paper recipe: pairs (K=2), last weights, no TTA",
     dict(run_length=2, average_tail=0.0, tta=1, **STAGES_OFF)),
    ("+ runs of K=4 slices", dict(average_tail=0.0, tta=1, **STAGES_OFF)),
    ("+ weights averaged over the last quarter", dict(tta=1, **STAGES_OFF)),
    ("+ 8-fold test-time augmentation", dict(STAGES_OFF)),
    ("+ the empirical Wiener stage", dict(nonlocal_strength=0.0, block_stride=0)),
    ("+ guided non-local means, mixed with it by their risk", dict(block_stride=0)),
    ("+ block matching, the three mixed by their risk (the product)", dict()),
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
    ("`balanced` without block matching", "balanced", dict(block_stride=0)),
    ("`balanced` without the residual guard", "balanced", dict(guard_factor=0.0)),
    # The product as it was before the tau cap, the guard and the two refinement stages.
    ("`balanced` with the paper's fixed tau, no guard, no refinement stages", "balanced",
     dict(guard_factor=0.0, tau_cap=None, **STAGES_OFF)),
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
        return (f"tau {report.tau:.4f}, matched {report.matched_fraction:.2f}, "
                f"guard gave back {100 * report.guard_returned:.0f} %")

    return [config_row(case, name, dataclasses.replace(config_for(preset), seed=seed,
                                                       **changes), note, log)
            for name, preset, changes in LOW_NOISE]


def ablation_rows(case: BenchCase, seconds: float, seed: int, log) -> List[Row]:
    return [config_row(case, name, dataclasses.replace(config_for("balanced"), steps=10 ** 6,
                                                       max_seconds=seconds, seed=seed,
                                                       **changes),
                       lambda report: f"{report.steps} steps", log)
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
                       lambda report, seed=seed: f"seed {seed}, {report.steps} steps", log)
            for seed in seeds for name, changes in LOSS_TERMS]


def memory_check(slices: int = 300, size: int = 512) -> Dict:
    """Denoise a synthetic 512x512x``slices`` int16 CT in a child process; report its peak
    RSS."""
    code = (
        "import numpy as np\n"
        "from nsn2n.options import DenoiseOptions\n"
        "from nsn2n.pipeline import denoise\n"
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
    return markdown_table(
        ("case", "method", "PSNR in mask (dB)", "PSNR whole (dB)", "SSIM whole", "time (s)",
         "notes"),
        ((r.case, r.method, f"{r.psnr_in:.2f}", f"{r.psnr_all:.2f}", f"{r.ssim_all:.3f}",
          f"{r.seconds:.1f}", r.note) for r in rows))


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
        text += ("\n\nIssue 2's targets, judged by `benchmarks/targets.py` from the rows above "
                 "(differences inside the head/body mask):\n\n" + judged)
    return text


def _log(row: Row) -> None:
    print(f"{row.case:8s} {row.method:50s} in {row.psnr_in:6.2f}  all {row.psnr_all:6.2f}  "
          f"ssim {row.ssim_all:.3f}  {row.seconds:7.1f}s  {row.note}", flush=True)


# The kinds of run, each with its default cases and how one case's rows are made.
KINDS: Dict[str, Dict] = {
    "synthetic": dict(cases="mri5,mri10,ct1e4,ct5e3"),
    "ablation": dict(cases="mri5,mri10,ct1e4,ct5e3"),
    "low-noise": dict(cases="mri1,ct1e6"),
    "loss-terms": dict(cases="mri5,mri10,ct1e4,ct5e3"),
}


def run(args) -> int:
    """One benchmark kind over its cases; the table is printed, kept under ``args.out``
    and, with ``args.docs``, written into its section of that file."""
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: List[Row] = []
    for name, case in cases(tuple((args.cases or KINDS[args.kind]["cases"]).split(","))):
        rows.append(score(case, "noisy input", case.noisy, 0.0))
        _log(rows[-1])
        if args.kind == "low-noise":
            rows += low_noise_rows(case, args.seed, _log)
        elif args.kind == "loss-terms":
            rows += loss_term_rows(case, [int(s) for s in args.seeds.split(",")], _log)
        elif args.kind == "ablation":
            rows += ablation_rows(case, args.seconds, args.seed, _log)
        else:
            if not args.learned_only:
                rows += classical_rows(case, not args.no_bm4d, _log)
            rows += learned_rows(case, args.presets.split(","), args.seed, _log, out)
    provenance = (f"Machine: {machine()}. Whole run: "
                  f"{(time.perf_counter() - started) / 60:.0f} min.")
    text = (benchmark_text(rows, provenance) if args.kind == "synthetic"
            else f"{table(rows)}\n\n{provenance}")
    save(out, args.kind.replace("-", ""), text, rows, args.docs)
    return 0


def merge(args) -> int:
    """One table from several runs' ``synthetic.json`` (later files' rows win)."""
    runs = [[Row(**r) for r in json.loads(Path(f).read_text(encoding="utf-8"))]
            for f in args.files]
    text = benchmark_text(merge_rows(runs), "Rows merged by `python -m benchmarks merge` from "
                          + ", then ".join("/".join(Path(f).parts[-2:]) for f in args.files)
                          + ".")
    save(Path(args.out), "synthetic", text, merge_rows(runs), args.docs)
    return 0


def memory(args) -> int:
    result = memory_check(slices=args.slices)
    print(json.dumps(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(result))
    return 0
