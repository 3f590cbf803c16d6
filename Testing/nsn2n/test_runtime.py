import math
import time

import pytest
import torch

from nsn2n.errors import InputError
from nsn2n.runtime import (Progress, RunClock, Stopwatch, autocast_dtype, available_memory,
                            precision_of, report_pace, require_memory, resolve_device)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(InputError):
        resolve_device("toaster")


def test_report_pace_extrapolates_the_time_left_from_the_pace_so_far():
    seen = []
    started = time.perf_counter() - 2.0  # two seconds ago
    report_pace(seen.append, "refine", 0, 4, started)
    report_pace(seen.append, "refine", 1, 4, started)
    report_pace(seen.append, "refine", 4, 4, started)
    report_pace(None, "refine", 1, 4, started)  # no callback: nothing to do
    assert math.isnan(seen[0].remaining) and math.isnan(seen[0].loss)
    assert seen[1].remaining == pytest.approx(3 * seen[1].elapsed) and seen[1].elapsed >= 2.0
    assert seen[2].remaining == 0.0 and [p.step for p in seen] == [0, 1, 4]


def test_precision_switch_maps_to_autocast_types():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "fp32") is None
    assert autocast_dtype(cpu, "bf16") is torch.bfloat16
    assert autocast_dtype(cpu, "fp16") is torch.float16
    assert autocast_dtype(cpu, "auto") in (None, torch.bfloat16)  # bf16 only when native
    assert autocast_dtype(torch.device("mps"), "auto") is None
    for dtype, name in ((None, "fp32"), (torch.bfloat16, "bf16"), (torch.float16, "fp16")):
        assert precision_of(dtype) == name


def test_stopwatch_adds_up_phases_entered_twice(monkeypatch):
    now = iter([0.0, 1.0, 5.0, 7.0, 10.0, 14.0, 20.0, 20.5])  # a clock, not sleeps
    monkeypatch.setattr(time, "perf_counter", lambda: next(now))
    stopwatch = Stopwatch()
    for phase in ("guard", "wiener", "guard"):
        with stopwatch(phase):
            pass
    assert list(stopwatch.seconds) == ["guard", "wiener"]
    assert stopwatch.seconds == {"guard": 1.0 + 4.0, "wiener": 2.0}
    with pytest.raises(ValueError):  # an error still stops the clock
        with stopwatch("check"):
            raise ValueError
    assert "check" in stopwatch.rounded()


def _event(phase, step, total, remaining):
    return Progress(phase, step, total, float("nan"), 0.0, remaining)


def test_run_clock_adds_the_later_phases_and_corrects_them_by_the_drift():
    seen = []
    clock = RunClock({"prepare": 0.0, "train": 10.0, "predict": 4.0, "refine": 6.0},
                     seen.append)
    clock(_event("train", 1, 10, 9.0))  # training paced at 9 s left
    assert seen[-1].remaining == pytest.approx(9.0 + 4.0 + 6.0, abs=0.2)
    clock.finished["train"] = 20.0  # pretend training took twice its estimate
    clock.phase, clock.phase_started = "predict", time.perf_counter()
    clock(_event("predict", 1, 2, float("nan")))  # no pace yet: the estimate x drift
    assert seen[-1].remaining == pytest.approx(2 * 4.0 + 2 * 6.0, abs=0.2)
    # Refine runs stages one after the other; a first stage's pace leaves out the rest.
    clock(_event("refine", 1, 5, 0.5))
    drift = sum(clock.finished.values()) / (10.0 + 4.0)
    assert seen[-1].remaining == pytest.approx(drift * 6.0, abs=0.2)
    clock.phase_started -= 100.0  # the phase has run past its estimate: the pace decides
    clock(_event("refine", 5, 5, 0.0))  # the last event of the run: nothing left
    assert seen[-1].remaining == 0.0


def test_run_clock_ends_at_nothing_left_even_before_its_estimate_is_spent():
    seen = []
    clock = RunClock({"prepare": 0.0, "train": 1.0, "predict": 1.0, "refine": 60.0},
                     seen.append)
    clock(_event("refine", 2, 2, 0.0))  # a stage's last pace report, well inside 60 s
    assert seen[-1].remaining > 30.0  # the estimate keeps the stages still to come
    clock.finish()
    assert (seen[-1].phase, seen[-1].step, seen[-1].total) == ("refine", 1, 1)
    assert seen[-1].remaining == 0.0


def test_a_volume_that_cannot_fit_is_refused_before_it_starts():
    require_memory(10 ** 6, available=10 ** 9)  # 44 MB of 1 GB: fine
    with pytest.raises(InputError, match=r"needs about 4\.1 GB .* 1\.0 GB are free"):
        require_memory(10 ** 8, available=2 ** 30)
    assert available_memory() is None or available_memory() > 0
