"""Issue 2's targets, judged from the rows of a benchmark table (one run, or several
merged by `nsn2n bench --merge`).

Computed, not written by hand: the verdicts in the README come from the same numbers as
the table above them, so they cannot drift apart when the benchmark is re-run.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

DIFFUSION = "curvature anisotropic diffusion (SimpleITK)"
NLM = "non-local means (scikit-image, 3-D)"
BM4D = "BM4D (true sigma)"
PLAIN = "plain neighbour-slice Noise2Noise"
SUPERVISED = "same network, clean target (supervised bound)"


def preset_method(preset: str) -> str:
    return f"NS-N2N `{preset}`"


BALANCED, FAST = preset_method("balanced"), preset_method("fast")


def _verdict(ok: bool, text: str) -> str:
    return f"{'yes' if ok else '**no**'}: {text}"


def _margin(rows: Dict[str, object], method: str, other: str, needed: float,
            label: str = "") -> Optional[str]:
    if method not in rows or other not in rows:
        return None
    ours, theirs = rows[method].psnr_in, rows[other].psnr_in
    name = f"{label} " if label else ""
    return _verdict(ours - theirs >= needed,
                    f"{ours - theirs:+.2f} ({ours:.2f} vs {name}{theirs:.2f})")


def _best_classical(rows, needed: float) -> Optional[str]:
    present = [m for m in (DIFFUSION, NLM) if m in rows]
    if BALANCED not in rows or not present:
        return None
    best = max(present, key=lambda m: rows[m].psnr_in)
    return _margin(rows, BALANCED, best, needed, "NLM" if best == NLM else "diffusion")


def _over_plain(rows, mri: bool) -> Optional[str]:
    verdict = _margin(rows, BALANCED, PLAIN, 0.5, "plain")
    if verdict is None or not mri:
        return verdict
    return verdict.split(": ", 1)[1] + " (CT target)"


def _not_slower(rows, method: str, other: str) -> Optional[str]:
    if method not in rows or other not in rows:
        return None
    ours, theirs = rows[method].seconds, rows[other].seconds
    return _verdict(ours <= theirs, f"{ours:.0f} s vs {theirs:.0f} s")


def _gap(rows, limit: float) -> Optional[str]:
    if BALANCED not in rows or SUPERVISED not in rows:
        return None
    gap = rows[SUPERVISED].psnr_in - rows[BALANCED].psnr_in
    side = "below" if gap >= 0 else "above"
    return _verdict(gap <= limit, f"{abs(gap):.2f} dB {side} ({rows[BALANCED].psnr_in:.2f} "
                                  f"vs {rows[SUPERVISED].psnr_in:.2f})")


def _ssim(rows) -> Optional[str]:
    if BALANCED not in rows:
        return None
    value = rows[BALANCED].ssim_all
    return _verdict(value > 0.95, f"{value:.3f}")


def _fast(rows, mri: bool) -> Optional[str]:
    if FAST not in rows or DIFFUSION not in rows:
        return None
    seconds = rows[FAST].seconds
    gain = rows[FAST].psnr_in - rows[DIFFUSION].psnr_in
    text = f"{seconds:.0f} s, {gain:+.2f}"
    return _verdict(seconds < 60 and gain >= 1.0, text) if mri else f"{text} (MRI target)"


def _beats_bm4d(rows) -> Optional[str]:
    margin = _margin(rows, BALANCED, BM4D, 1.0, "BM4D")
    if margin is None:
        return None
    in_time = rows[BALANCED].seconds <= rows[BM4D].seconds
    gain = rows[BALANCED].psnr_in - rows[BM4D].psnr_in
    return _verdict(gain >= 1.0 and in_time,
                    f"{gain:+.2f} in {rows[BALANCED].seconds:.0f} s vs "
                    f"{rows[BM4D].seconds:.0f} s")


CHECKS: Sequence = (
    ("`balanced` >= +1.5 dB over curvature diffusion (MRI)",
     lambda rows, mri: _margin(rows, BALANCED, DIFFUSION, 1.5, "diffusion") if mri else None),
    ("`balanced` >= +0.5 dB over the best of diffusion and NLM (CT)",
     lambda rows, mri: None if mri else _best_classical(rows, 0.5)),
    ("`balanced` >= +0.5 dB over plain neighbour-slice N2N (CT)", _over_plain),
    ("`balanced` wall time <= BM4D's", lambda rows, mri: _not_slower(rows, BALANCED, BM4D)),
    ("whole-volume SSIM > 0.95 after bias correction (MRI)",
     lambda rows, mri: _ssim(rows) if mri else None),
    ("within 2.0 dB of the supervised bound at equal time", lambda rows, mri: _gap(rows, 2.0)),
    ("`fast` < 60 s and >= +1 dB over diffusion", _fast),
    ("goal: >= +1.0 dB over BM4D (true sigma) in <= its time",
     lambda rows, mri: _beats_bm4d(rows)),
    ("goal: within 0.5 dB of supervised", lambda rows, mri: _gap(rows, 0.5)),
)


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
    for label, check in CHECKS:
        cells = [check(by_case[name], name.startswith("MRI")) or "" for name in names]
        if any(cells):
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""
