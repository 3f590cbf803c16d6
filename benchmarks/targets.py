"""Issue 2's targets, judged from the rows of a benchmark table (one run, or several
merged by `python -m benchmarks merge`).

Computed, not written by hand: the verdicts in docs/benchmarks.md come from the same numbers as
the table above them, so they cannot drift apart when the benchmark is re-run.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

DIFFUSION = "curvature anisotropic diffusion (SimpleITK)"
NLM = "non-local means (scikit-image, 3-D)"
BM4D = "BM4D (true sigma)"
PLAIN = "plain neighbour-slice Noise2Noise"
SUPERVISED = "same network, clean target (supervised bound)"


def preset_method(preset: str) -> str:
    return f"NS-N2N `{preset}`"


BALANCED, FAST = preset_method("balanced"), preset_method("fast")


Judgement = Optional[Tuple[bool, str]]  # (met, the numbers behind it), or no rows to judge


def _margin(rows: Dict[str, object], method: str, other: str, needed: float,
            label: str = "") -> Judgement:
    if method not in rows or other not in rows:
        return None
    ours, theirs = rows[method].psnr_in, rows[other].psnr_in
    name = f"{label} " if label else ""
    return ours - theirs >= needed, f"{ours - theirs:+.2f} ({ours:.2f} vs {name}{theirs:.2f})"


def _best_classical(rows, needed: float) -> Judgement:
    present = [m for m in (DIFFUSION, NLM) if m in rows]
    if BALANCED not in rows or not present:
        return None
    best = max(present, key=lambda m: rows[m].psnr_in)
    return _margin(rows, BALANCED, best, needed, "NLM" if best == NLM else "diffusion")


def _not_slower(rows, method: str, other: str) -> Judgement:
    if method not in rows or other not in rows:
        return None
    ours, theirs = rows[method].seconds, rows[other].seconds
    return ours <= theirs, f"{ours:.0f} s vs {theirs:.0f} s"


def _gap(rows, limit: float) -> Judgement:
    if BALANCED not in rows or SUPERVISED not in rows:
        return None
    gap = rows[SUPERVISED].psnr_in - rows[BALANCED].psnr_in
    side = "below" if gap >= 0 else "above"
    return gap <= limit, (f"{abs(gap):.2f} dB {side} ({rows[BALANCED].psnr_in:.2f} "
                          f"vs {rows[SUPERVISED].psnr_in:.2f})")


def _ssim(rows) -> Judgement:
    if BALANCED not in rows:
        return None
    value = rows[BALANCED].ssim_all
    return value > 0.95, f"{value:.3f}"


def _fast(rows) -> Judgement:
    if FAST not in rows or DIFFUSION not in rows:
        return None
    seconds = rows[FAST].seconds
    gain = rows[FAST].psnr_in - rows[DIFFUSION].psnr_in
    return seconds < 60 and gain >= 1.0, f"{seconds:.0f} s, {gain:+.2f}"


def _beats_bm4d(rows) -> Judgement:
    if BALANCED not in rows or BM4D not in rows:
        return None
    gain = rows[BALANCED].psnr_in - rows[BM4D].psnr_in
    in_time = rows[BALANCED].seconds <= rows[BM4D].seconds
    return gain >= 1.0 and in_time, (f"{gain:+.2f} in {rows[BALANCED].seconds:.0f} s vs "
                                     f"{rows[BM4D].seconds:.0f} s")


BOTH, MRI, CT = ("MRI", "CT"), ("MRI",), ("CT",)

# (target, the modalities the issue sets it for, the modalities whose cell shows the
# numbers, judgement from one case's rows by method)
CHECKS: Sequence[Tuple[str, Tuple[str, ...], Tuple[str, ...], Callable[[Dict], Judgement]]] = (
    ("`balanced` >= +1.5 dB over curvature diffusion (MRI)", MRI, MRI,
     lambda rows: _margin(rows, BALANCED, DIFFUSION, 1.5, "diffusion")),
    ("`balanced` >= +0.5 dB over the best of diffusion and NLM (CT)", CT, CT,
     lambda rows: _best_classical(rows, 0.5)),
    ("`balanced` >= +0.5 dB over plain neighbour-slice N2N (CT)", CT, BOTH,
     lambda rows: _margin(rows, BALANCED, PLAIN, 0.5, "plain")),
    ("`balanced` wall time <= BM4D's", BOTH, BOTH,
     lambda rows: _not_slower(rows, BALANCED, BM4D)),
    ("whole-volume SSIM > 0.95 after bias correction (MRI)", MRI, MRI, _ssim),
    ("within 2.0 dB of the supervised bound at equal time", BOTH, BOTH,
     lambda rows: _gap(rows, 2.0)),
    ("`fast` < 60 s and >= +1 dB over diffusion", MRI, BOTH, _fast),
    ("goal: >= +1.0 dB over BM4D (true sigma) in <= its time", BOTH, BOTH, _beats_bm4d),
    ("goal: within 0.5 dB of supervised", BOTH, BOTH, lambda rows: _gap(rows, 0.5)),
)


def _cell(judgement: Judgement, modality: str, judged_on, shown_on) -> str:
    if judgement is None or modality not in shown_on:
        return ""
    met, text = judgement
    if modality in judged_on:
        return f"{'yes' if met else '**no**'}: {text}"
    return f"{text} ({judged_on[0]} target)"


def target_table(rows: List) -> str:
    """A markdown table: one line per target, one column per case, differences in dB
    inside the head/body mask; a target a case has no rows for stays empty, and with no
    target to judge at all the table is empty."""
    by_case: Dict[str, Dict[str, object]] = {}
    for row in rows:
        by_case.setdefault(row.case, {})[row.method] = row
    names = list(by_case)
    lines = ["| target | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for label, judged_on, shown_on, judge in CHECKS:
        cells = [_cell(judge(by_case[name]), "MRI" if name.startswith("MRI") else "CT",
                       judged_on, shown_on) for name in names]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""
