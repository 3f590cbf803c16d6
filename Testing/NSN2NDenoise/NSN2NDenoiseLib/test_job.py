"""The engine's own process: the real ``nsn2n`` command on tiny volumes, outside Slicer."""

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from NSN2NDenoiseLib.job import (CANCEL_GRACE_SECONDS, EngineError, EngineRun,
                                 engine_environment, failure_of, progress_of)
from nsn2n.errors import InputError
from nsn2n.options import DenoiseOptions
from nsn2n.volume import Geometry, Volume

FAST = DenoiseOptions(steps=4, seed=0, device="cpu")


def tiny_volume(slices=5):
    rng = np.random.default_rng(0)
    array = (100 + 10 * rng.standard_normal((slices, 32, 32))).astype(np.float32)
    # slices not thick: a thick-slice MR volume without air is left as it is (no training)
    return Volume(array, Geometry((1.0, 1.0, 1.2), (0.0, 0.0, 0.0),
                                  (1, 0, 0, 0, 1, 0, 0, 0, 1)), "MR")


def poll_to_end(run, timeout=120):
    deadline = time.monotonic() + timeout
    while run.poll():
        assert time.monotonic() < deadline, "the run did not end"
        time.sleep(0.01)


def test_a_run_reports_its_estimate_first_then_progress_then_the_result_on_this_thread():
    seen, main = [], threading.get_ident()
    run = EngineRun(tiny_volume(), FAST,
                    on_progress=lambda p: seen.append((p, threading.get_ident())),
                    on_done=lambda r: seen.append((r, threading.get_ident()))).start()
    folder = run.folder
    assert (folder / "input.nrrd").exists()
    poll_to_end(run)
    (array, report), thread = seen[-1]
    assert all(t == main for _, t in seen)
    phases = [p.phase for p, _ in seen[:-1]]
    assert phases[0] == "estimate" and seen[0][0].remaining > 0
    assert array.shape == (5, 32, 32) and array.dtype == np.float32
    assert type(report).__name__ == "NSN2NReport" and report.steps == 4
    assert report.estimated_seconds == pytest.approx(seen[0][0].remaining, abs=0.1)
    assert "noise" in report.summary()
    assert not folder.exists()  # the temporary folder goes with the run


def test_bad_input_in_the_process_reaches_the_error_handler_as_one_sentence():
    errors = []
    run = EngineRun(tiny_volume(slices=2), DenoiseOptions(method="nsn2n", device="cpu"),
                    on_error=errors.append).start()
    poll_to_end(run)
    error, = errors
    assert isinstance(error, InputError)
    assert "slice" in str(error) and "\n" not in str(error) and "Traceback" not in str(error)
    assert not run.folder.exists()


def test_without_an_error_handler_the_error_is_raised_by_poll():
    run = EngineRun(tiny_volume(slices=2), DenoiseOptions(method="nsn2n", device="cpu"))
    run.start().wait(120)
    with pytest.raises(InputError):
        run.poll()


def test_cancel_stops_the_process_within_a_second_and_leaves_nothing():
    training = threading.Event()
    outcome = []
    run = EngineRun(tiny_volume(), DenoiseOptions(steps=100000, device="cpu"),
                    on_progress=lambda p: p.phase == "train" and training.set(),
                    on_cancelled=lambda: outcome.append("cancelled"),
                    on_done=lambda r: outcome.append("done")).start()
    deadline = time.monotonic() + 120
    while not training.is_set():
        assert run.poll() and time.monotonic() < deadline
        time.sleep(0.01)
    asked = time.monotonic()
    run.cancel()
    poll_to_end(run, timeout=10)
    took = time.monotonic() - asked
    assert outcome == ["cancelled"]
    assert took < CANCEL_GRACE_SECONDS + 0.5, took
    assert run._process.returncode is not None and not run.folder.exists()


def test_a_cancel_after_the_process_ended_still_delivers_no_result():
    outcome = []
    run = EngineRun(tiny_volume(), FAST, on_cancelled=lambda: outcome.append("cancelled"),
                    on_done=lambda r: outcome.append("done")).start()
    run.wait(120)  # the result is queued, not yet delivered
    run.cancel()
    poll_to_end(run)
    assert outcome == ["cancelled"]


def test_discard_drops_the_result():
    delivered = []
    run = EngineRun(tiny_volume(), FAST, on_done=delivered.append).start()
    run.discard(30)
    assert not run.poll() and delivered == [] and not run.folder.exists()


def test_progress_lines_and_what_is_not_one():
    p = progress_of('{"phase": "train", "step": 3, "total": 10, "loss": null, '
                    '"elapsed": 1.5, "remaining": 4.0}')
    assert (p.phase, p.step, p.total, p.elapsed, p.remaining) == ("train", 3, 10, 1.5, 4.0)
    assert p.loss != p.loss  # null: not known
    for line in ("", "warning: something", "{}", '{"phase": "train"}', "[1, 2]"):
        assert progress_of(line) is None


def test_failures_read_as_one_sentence_with_the_details_kept():
    bad = failure_of(2, ["nsn2n: error: the volume has 2 slices; at least 3 are needed"])
    assert isinstance(bad, InputError) and str(bad).startswith("the volume has 2 slices")
    crash = failure_of(1, ["Traceback (most recent call last):", '  File "x.py"',
                           "ValueError: bad thing", ""])
    assert isinstance(crash, EngineError)
    assert str(crash).endswith("(exit status 1): ValueError: bad thing")
    assert "Traceback" in crash.details
    memory = failure_of(1, ["nsn2n: error: out of memory"])
    assert isinstance(memory, EngineError) and str(memory) == "out of memory"
    assert "no message" in str(failure_of(-9, []))


def test_the_process_imports_the_engine_that_ships_with_the_module():
    import nsn2n

    environment = engine_environment({"PYTHONPATH": "/elsewhere", "HOME": "/h"})
    first = environment["PYTHONPATH"].split(os.pathsep)[0]
    assert Path(first) == Path(nsn2n.__file__).resolve().parents[1]
    assert environment["PYTHONPATH"].endswith(os.pathsep + "/elsewhere")
    assert environment["HOME"] == "/h"
