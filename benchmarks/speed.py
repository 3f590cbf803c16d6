"""Speed on both precision paths (``python -m benchmarks speed``).

For every case and every preset, on the fp32 path and (where the CPU runs bf16 natively)
the bf16 path: the estimate shown before the run against the measured wall time, that
time against BM4D's on the same volume in the same run, the seconds of each phase, the
peak resident memory, and the quality, so that the presets' order in time and in quality
can be checked.

Each product run is a child process (``python -m benchmarks speed-run``): its peak resident
memory is its own, and its precision is set by the ``precision`` option as a user would.
The cases are the issue's: the synthetic MRI slab (48x224x192) and CT (48x256x256, the
shape the CT simulator makes), the two real acquisitions of ``shared/realdata`` (a
20x72x72 ASL volume, a 32x112x112 DWI b0) and a simulated ultrasound stack (Speckle2Self).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from nsn2n.options import DenoiseOptions
from nsn2n.volume import Geometry, Volume

from .report import machine, markdown_table, save

CASES = ("mri5", "ct1e4", "asl", "dwi", "us-fine")
# Within this share of the measured time the estimate shown before the run counts as right
# (issue 23).
ESTIMATE_TOLERANCE = 0.25


@dataclasses.dataclass
class SpeedRow:
    case: str
    shape: str
    precision: str
    preset: str
    quality: float  # PSNR (dB; MRI, CT, real) or SSIM (ultrasound)
    seconds: float  # wall time of the run, estimate excluded
    estimated: float  # the estimate shown before the run
    estimate_seconds: float  # how long making the estimate took
    steps: int
    peak_gib: float  # peak resident memory of the run's process
    phases: Dict[str, float]
    # How far the time left shown during the run was off, as a share of the run's time:
    # the largest error of elapsed + time left against the measured total over the second
    # half of the run (the first half: eta_first_half).
    eta_first_half: float
    eta_second_half: float


def load_case(name: str, data: Optional[str] = None
              ) -> Tuple[Volume, Callable[[np.ndarray], float], str]:
    """The volume, its quality score (higher is better) and the score's name."""
    from nsn2n import metrics

    if name in ("asl", "dwi"):
        from .realdata import DEFAULT_FOLDER, SETS, load

        spec = next(s for s in SETS if s.name.lower().startswith(name))
        volume, scored = load(Path(data) if data else DEFAULT_FOLDER, spec)
        return volume, lambda out: scored.row(spec.name, "", out, 0.0).psnr_ref, "PSNR vs ref"
    if name.startswith("us-"):
        from Testing.simulators import speckle

        simulated = speckle.simulate(speckle.CASES[name])
        clean = simulated["clean"]
        return (Volume(simulated["noisy"], Geometry.identity(), "US"),
                lambda out: metrics.ssim_frames(metrics.affine_fit(out, clean), clean), "SSIM")
    from Testing.simulators.volumes import cases

    (_, case), = cases((name,))
    return (Volume(case.noisy, case.geometry, case.modality),
            lambda out: metrics.psnr(out, case.clean, case.mask), "PSNR in mask")


def run_one(case: str, preset: str, precision: str, seed: int, data: Optional[str],
            max_minutes: Optional[float] = None) -> Dict:
    """One product run as a user makes it: the estimate, then the run with it."""
    from nsn2n.pipeline import denoise, estimate

    volume, quality, _ = load_case(case, data)
    options = DenoiseOptions(preset=preset, precision=precision, seed=seed,
                             max_minutes=max_minutes)
    started = time.perf_counter()
    estimated = estimate(volume, options)
    estimate_seconds = time.perf_counter() - started
    shown: List[Tuple[float, float]] = []  # (seconds into the run, time left shown)
    started = time.perf_counter()
    result, report = denoise(volume, options, estimated=estimated, progress=lambda p: (
        shown.append((time.perf_counter() - started, p.remaining))))
    seconds = time.perf_counter() - started
    return dataclasses.asdict(SpeedRow(
        case, "x".join(map(str, volume.array.shape)), report.precision, preset,
        round(float(quality(result.array)), 4), round(seconds, 1),
        round(estimated.seconds, 1), round(estimate_seconds, 1), report.steps,
        round(peak_resident_gib(), 2), report.phase_seconds,
        *(round(eta_error(shown, seconds, half), 3) for half in (0, 1))))


def eta_error(shown: List[Tuple[float, float]], seconds: float, half: int) -> float:
    """The largest |elapsed + time left - total| / total over one half of the run."""
    errors = [abs(at + left - seconds) / seconds for at, left in shown
              if left == left and (at >= seconds / 2) == bool(half)]
    return max(errors, default=float("nan"))


def peak_resident_gib() -> float:
    """This process's peak resident memory.  VmHWM, not getrusage's ru_maxrss: Linux keeps
    ru_maxrss across exec, so a child would report its parent's peak when that is larger."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def child(args) -> int:
    """``speed-run``: one run, its row as JSON on the last line of stdout."""
    print(json.dumps(run_one(args.case, args.preset, args.precision, args.seed, args.data,
                             args.max_minutes)))
    return 0


def bm4d_seconds(case: str, data: Optional[str]) -> Optional[float]:
    """BM4D's wall time on the case's volume with the noise level it needs (measured from
    the data as the real-data benchmark's blind row does); None for ultrasound."""
    if case.startswith("us-"):
        return None
    from . import baselines
    from .realdata import blind_sigma

    volume, _, _ = load_case(case, data)
    noisy = volume.array.astype(np.float32)
    started = time.perf_counter()
    baselines.bm4d(noisy, blind_sigma(noisy))
    return time.perf_counter() - started


def precisions() -> List[str]:
    """fp32 always; bf16 too where the CPU runs it natively."""
    import torch

    from nsn2n.runtime import autocast_dtype

    native = autocast_dtype(torch.device("cpu")) is torch.bfloat16
    return ["fp32", "bf16"] if native else ["fp32"]


def table(rows: List[SpeedRow], bm4d: Dict[str, Optional[float]], scores: Dict[str, str]
          ) -> str:
    body = []
    for r in rows:
        error = r.estimated / r.seconds - 1 if r.seconds > 0 else float("nan")
        reference = bm4d.get(r.case)
        train = r.phases.get("train", 0.0)
        body.append((
            r.case, r.shape, r.precision, f"`{r.preset}`", r.steps,
            f"{r.quality:.4f}" if scores[r.case] == "SSIM" else f"{r.quality:.2f}",
            f"{r.seconds:.0f}", "-" if reference is None else f"{reference:.0f}",
            "-" if reference is None else f"{r.seconds / reference:.2f}",
            f"{r.estimated:.0f} ({100 * error:+.0f} %)",
            f"{100 * r.eta_first_half:.0f} / {100 * r.eta_second_half:.0f} %",
            f"{100 * train / r.seconds:.0f} %", f"{r.peak_gib:.2f}"))
    return markdown_table(
        ("case", "shape", "precision", "preset", "steps", "quality", "time (s)", "BM4D (s)",
         "time / BM4D", "estimate (s, error)", "time left off by (1st / 2nd half)",
         "training share", "peak memory (GiB)"),
        body)


def phase_table(rows: List[SpeedRow]) -> str:
    names: List[str] = []
    for r in rows:
        names += [n for n in r.phases if n not in names]
    return markdown_table(
        ("case", "precision", "preset") + tuple(names),
        ((r.case, r.precision, r.preset)
         + tuple(f"{r.phases.get(n, 0.0):.1f}" for n in names) for r in rows))


# Quality differences below these count as ties when the presets' order is checked: the
# three presets of a small real volume land within 0.001 dB of each other, a difference
# no reader could see and a different seed changes.  Larger steps are held to the order.
QUALITY_TIES = {"SSIM": 0.0005}
PSNR_TIE = 0.005  # dB


def verdicts(rows: List[SpeedRow], bm4d: Dict[str, Optional[float]],
             scores: Optional[Dict[str, str]] = None) -> str:
    """The issue's checks, each as measured; ``scores``: the quality's name per case
    (PSNR unless said)."""
    scores = scores or {}
    lines = []
    inside = sum(abs(r.estimated / r.seconds - 1) <= ESTIMATE_TOLERANCE for r in rows)
    lines.append(f"- estimate within +-{100 * ESTIMATE_TOLERANCE:.0f} % of the measured "
                 f"time: {inside} of {len(rows)} runs")
    groups: Dict[Tuple[str, str], Dict[str, SpeedRow]] = {}
    for r in rows:
        groups.setdefault((r.case, r.precision), {})[r.preset] = r
    for (case, precision), presets in groups.items():
        ordered = [presets[p] for p in ("fast", "balanced", "best") if p in presets]
        faster = all(a.seconds < b.seconds for a, b in zip(ordered, ordered[1:]))
        tie = QUALITY_TIES.get(scores.get(case, "PSNR"), PSNR_TIE)
        better = all(a.quality <= b.quality + tie for a, b in zip(ordered, ordered[1:]))
        reference = bm4d.get(case)
        balanced = presets.get("balanced")
        against = ("" if reference is None or balanced is None else
                   f"; `balanced` {balanced.seconds:.0f} s vs BM4D {reference:.0f} s")
        lines.append(f"- {case}, {precision}: presets ordered in time "
                     f"{'yes' if faster else 'NO'}, in quality "
                     f"{'yes' if better else 'NO'} (ties within {tie:g}){against}")
    return "\n".join(lines)


# --max-minutes is checked on runs long enough for a budget to bind: balanced, asked to
# finish in this share of the time it took without one.
BUDGET_SHARE, BUDGET_MIN_SECONDS, BUDGET_TOLERANCE = 0.6, 30.0, 0.10


def budget_table(budgets: List[Tuple[float, SpeedRow]]) -> str:
    """Each --max-minutes run: the budget, the run's time (the estimate of a few seconds
    before it aside, as the option promises) and how far off."""
    return markdown_table(
        ("case", "precision", "preset", "budget (s)", "taken (s)", "off by", "quality"),
        ((r.case, r.precision, r.preset, f"{budget:.0f}",
          f"{r.seconds:.0f}", f"{100 * (r.seconds / budget - 1):+.0f} %",
          f"{r.quality:.2f}") for budget, r in budgets))


def budget_verdict(budgets: List[Tuple[float, SpeedRow]]) -> str:
    """Over the budget is what a user minds; finishing early wastes some of it."""
    off = [r.seconds / budget - 1 for budget, r in budgets]
    over = sum(o <= BUDGET_TOLERANCE for o in off)
    inside = sum(abs(o) <= BUDGET_TOLERANCE for o in off)
    return (f"- --max-minutes: at most {100 * BUDGET_TOLERANCE:.0f} % over the budget in "
            f"{over} of {len(off)} runs, within +-{100 * BUDGET_TOLERANCE:.0f} % in {inside}; "
            f"off by {100 * min(off):+.0f} to {100 * max(off):+.0f} %")


def run(args) -> int:
    out = Path(args.out)
    chosen = args.cases.split(",")
    paths = args.precisions.split(",") if args.precisions else precisions()
    presets = args.presets.split(",")
    bm4d: Dict[str, Optional[float]] = {}
    scores: Dict[str, str] = {}
    rows: List[SpeedRow] = []
    budgets: List[Tuple[float, SpeedRow]] = []

    def child_row(case, preset, precision, *extra):
        command = [sys.executable, "-m", "benchmarks", "speed-run", "--case", case,
                   "--preset", preset, "--precision", precision, "--seed", str(args.seed),
                   *(["--data", args.data] if args.data else []), *extra]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        return SpeedRow(**json.loads(done.stdout.strip().splitlines()[-1]))

    for case in chosen:
        scores[case] = load_case(case, args.data)[2]
        bm4d[case] = None if args.no_bm4d else bm4d_seconds(case, args.data)
        if bm4d[case] is not None:
            print(f"{case}: BM4D {bm4d[case]:.1f} s", flush=True)
        for precision in paths:
            for preset in presets:
                row = child_row(case, preset, precision)
                rows.append(row)
                print(f"{case} {row.precision} {preset}: {row.seconds:.1f} s (estimated "
                      f"{row.estimated:.1f}), quality {row.quality:.4f}, {row.steps} steps, "
                      f"peak {row.peak_gib:.2f} GiB", flush=True)
                if preset == "balanced" and row.seconds >= BUDGET_MIN_SECONDS:
                    budget = round(BUDGET_SHARE * row.seconds)
                    limited = child_row(case, preset, precision, "--max-minutes",
                                        f"{budget / 60:.4f}")
                    budgets.append((budget, limited))
                    print(f"{case} {precision} {preset} in {budget} s: "
                          f"{limited.seconds:.1f} s", flush=True)
    ratios = [r.estimated / r.seconds for r in rows]
    text = "\n\n".join([
        f"Machine: {machine()}. Seed {args.seed}; `python -m benchmarks speed`; "
        f"{time.strftime('%Y-%m-%d')}. Quality: "
        + ", ".join(f"{case}: {name}" for case, name in scores.items()) + ".",
        table(rows, bm4d, scores),
        f"Estimate / measured: median {statistics.median(ratios):.2f}, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}.",
        verdicts(rows, bm4d, scores) + ("\n" + budget_verdict(budgets) if budgets else ""),
        "Seconds per phase:",
        phase_table(rows)]
        + ([f"A time budget (`--max-minutes`, {100 * BUDGET_SHARE:.0f} % of `balanced`'s "
            "time without one):", budget_table(budgets)] if budgets else []))
    save(out, "speed", text, rows, getattr(args, "docs", None))
    return 0
