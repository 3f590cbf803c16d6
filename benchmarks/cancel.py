"""How fast a cancel stops a run (``python -m benchmarks cancel``).

One run of a CT-like volume with 512 x 512 slices is timed phase by phase; then the same
run is started again and again and cancelled at moments spread over its length.  The
latency is the time from setting the cancel event to the :class:`Cancelled` exception in
the caller: what the Slicer panel's Cancel button and Ctrl-C in the command wait for (the
panel's process gets SIGTERM, which sets the same path going; the kill after
``job.CANCEL_GRACE_SECONDS`` is the backstop).
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from pathlib import Path
from typing import List

import numpy as np

from .report import machine, markdown_table, save


@dataclasses.dataclass
class CancelRow:
    at: float  # seconds into the run
    phase: str  # the progress phase it was in
    stage: str  # the stopwatch stage it was in
    latency: float


def volume(shape):
    from nsn2n.volume import Geometry, Volume

    rng = np.random.default_rng(0)
    z, y, x = np.ogrid[:shape[0], :shape[1], :shape[2]]
    body = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < (0.4 * shape[1]) ** 2
    inner = ((y - shape[1] / 2) ** 2 + (x - shape[2] / 3) ** 2) < (0.1 * shape[1]) ** 2
    hu = np.where(body, 40, -1000) + np.where(inner & body, 60 + 10 * np.sin(z / 3.0), 0)
    hu = hu + rng.normal(0, 30, shape)
    return Volume(hu.astype(np.int16), Geometry.identity((0.7, 0.7, 3.0)), "CT")


def run(args) -> int:
    from nsn2n.errors import Cancelled
    from nsn2n.options import DenoiseOptions
    from nsn2n.pipeline import denoise

    shape = tuple(int(n) for n in args.shape.split("x"))[::-1]  # given as x, y, z
    options = DenoiseOptions(preset=args.preset, device="cpu", seed=args.seed)
    data = volume(shape)
    denoise(data, dataclasses.replace(options, steps=10))  # warm-up: kernels, caches
    marks: List = []
    started = time.perf_counter()
    _, report = denoise(data, options, lambda p: marks.append(
        (time.perf_counter() - started, p.phase)))
    total = time.perf_counter() - started
    rows: List[CancelRow] = []
    for at in np.linspace(0.03, 0.97, args.points) * total:
        event, state = threading.Event(), {"phase": "start"}

        def fire():
            state["set"] = time.perf_counter()
            event.set()

        timer = threading.Timer(at, fire)
        run_started = time.perf_counter()
        timer.start()
        try:
            denoise(data, options, lambda p: state.update(phase=p.phase), event)
        except Cancelled:
            latency = time.perf_counter() - state["set"]
            rows.append(CancelRow(round(at, 1), state["phase"], stage_at(report, at, total),
                                  round(latency, 3)))
            print(f"{at:7.1f} s {state['phase']:8s} {rows[-1].stage:9s} {latency:.3f} s",
                  flush=True)
        else:
            print(f"{at:7.1f} s finished in {time.perf_counter() - run_started:.1f} s "
                  "before the cancel", flush=True)
        finally:
            timer.cancel()
    latencies = [row.latency for row in rows]
    text = (markdown_table(("cancelled at (s)", "phase", "stage (from the timed run)",
                            "latency (s)"),
                           ((r.at, r.phase, r.stage, f"{r.latency:.2f}") for r in rows))
            + f"\n\nVolume {args.shape} int16 CT-like, preset {args.preset}, one run "
            f"{total:.0f} s; latency median {statistics.median(latencies):.2f} s, "
            f"max {max(latencies):.2f} s over {len(rows)} cancels.\n\n"
            f"Command: `python -m benchmarks cancel --shape {args.shape} --preset "
            f"{args.preset}`. Machine: {machine()}.")
    save(Path(args.out), "cancel", text, rows, args.docs)
    return 0


def stage_at(report, at: float, total: float) -> str:
    """The stopwatch stage the timed run was in ``at`` seconds in (stages in order; the
    time outside them, reading and normalising, is "other")."""
    elapsed = 0.0
    scale = total / max(sum(report.phase_seconds.values()), 1e-9)
    for stage, seconds in report.phase_seconds.items():
        elapsed += seconds * scale
        if at <= elapsed:
            return stage
    return "other"
