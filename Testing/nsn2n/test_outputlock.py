import json
import os
import subprocess
import sys

import pytest

from nsn2n.cli import EXIT_CANCELLED, EXIT_FAILED
from nsn2n.errors import OutputError
from nsn2n.files import denoise_file
from nsn2n.options import DenoiseOptions
from nsn2n.outputlock import claimed, lock_path, process_alive
from Testing.helpers import write_ct

FAST = DenoiseOptions(steps=4, preset="fast", device="cpu")


def a_finished_process():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_second_claim_on_the_same_output_is_refused_with_the_first_named(tmp_path):
    output = tmp_path / "out.nrrd"
    with claimed(output) as lock:
        assert lock == lock_path(output) and lock.exists()
        with pytest.raises(OutputError, match=f"being written by another run \\(process "
                                              f"{os.getpid()}") as info:
            with claimed(output):
                pass
        assert str(lock) in str(info.value) and "\n" not in str(info.value)
        assert lock.exists()  # the loser leaves the winner's claim alone
    assert not lock.exists()


def test_a_claim_left_by_a_dead_process_is_taken_over(tmp_path):
    output = tmp_path / "out.nrrd"
    import socket

    dead = a_finished_process()
    assert not process_alive(dead) and process_alive(os.getpid())
    lock_path(output).write_text(json.dumps({"pid": dead, "host": socket.gethostname(),
                                             "started": "2026-01-01T00:00:00"}))
    with claimed(output):
        assert json.loads(lock_path(output).read_text())["pid"] == os.getpid()
    assert not lock_path(output).exists()


def test_a_claim_from_another_host_or_unreadable_is_never_taken(tmp_path):
    output = tmp_path / "out.nrrd"
    for content in (json.dumps({"pid": a_finished_process(), "host": "elsewhere",
                                "started": "x"}), "not json"):
        lock_path(output).write_text(content)
        with pytest.raises(OutputError, match="remove .* if that run is gone"):
            with claimed(output):
                pass
        assert lock_path(output).read_text() == content


def test_a_failed_run_gives_its_claim_back(tmp_path):
    source = write_ct(tmp_path / "in.nrrd", 0)
    output = tmp_path / "out.nrrd"

    def stop(progress):
        raise ValueError("stop")

    with pytest.raises(ValueError, match="stop"):
        denoise_file(source, output, FAST, progress=stop)
    assert not lock_path(output).exists() and not output.exists()
    denoise_file(source, output, FAST)  # free again
    assert output.exists() and not lock_path(output).exists()


def test_two_commands_on_one_output_the_second_stops_at_once(tmp_path):
    source = write_ct(tmp_path / "in.nrrd", 0)
    output = tmp_path / "out.nrrd"
    command = [sys.executable, "-m", "nsn2n", "denoise", str(source), str(output),
               "--steps", "1000000", "--device", "cpu", "--progress", "json"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        first.stdout.readline()  # its first progress line: the claim is held by now
        second = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # the second did not wait for the first
        assert second.returncode == EXIT_FAILED, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"process {first.pid}" in lines[0]
    finally:
        first.terminate()  # a cancel: nothing written, the claim given back
        first.communicate(timeout=60)
    assert first.returncode == EXIT_CANCELLED
    assert list(tmp_path.iterdir()) == [source]
