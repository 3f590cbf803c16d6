import threading
import time

import pytest

from NSN2NDenoiseLib.job import DenoiseJob
from nsn2n.errors import Cancelled


def run_to_end(job, timeout=10):
    deadline = time.monotonic() + timeout
    while job.poll():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_events_arrive_in_order_on_the_polling_thread():
    seen, main = [], threading.get_ident()

    def work(progress, cancel):
        for i in range(5):
            progress(i)
        return "result"

    job = DenoiseJob(work, on_progress=lambda p: seen.append(("p", p, threading.get_ident())),
                     on_done=lambda r: seen.append(("done", r, threading.get_ident()))).start()
    job.wait()
    run_to_end(job)
    assert seen[-1][:2] == ("done", "result")
    assert all(thread == main for _, _, thread in seen)
    assert seen[0] == ("p", 4, main)  # only the newest progress of a batch is delivered


def test_cancel_is_cooperative_and_reported():
    started = threading.Event()
    outcome = []

    def work(progress, cancel):
        started.set()
        while not cancel.is_set():
            time.sleep(0.001)
        raise Cancelled("stop")

    job = DenoiseJob(work, on_cancelled=lambda: outcome.append("cancelled"),
                     on_done=lambda r: outcome.append("done")).start()
    started.wait(5)
    job.cancel()
    run_to_end(job)
    assert outcome == ["cancelled"]


def test_errors_reach_the_error_handler_or_raise_without_one():
    errors = []
    job = DenoiseJob(lambda p, c: 1 / 0, on_error=errors.append).start()
    job.wait()
    run_to_end(job)
    assert isinstance(errors[0], ZeroDivisionError)
    job = DenoiseJob(lambda p, c: 1 / 0).start()
    job.wait()
    with pytest.raises(ZeroDivisionError):
        job.poll()


def test_discard_drops_the_result():
    delivered = []
    job = DenoiseJob(lambda p, c: "x", on_done=delivered.append).start()
    job.discard(5)
    assert not job.poll() and delivered == []
