"""A denoising run of the ``nsn2n`` command in its own process, reporting through a queue.

Inside Slicer the main thread holds Python's global interpreter lock between Qt events,
so training on a Python thread of the application would only run in the gaps (several
times slower than from a shell).  The run therefore goes to a child process, as the
extensions users trust do theirs (SlicerTotalSegmentator, MONAIAuto3DSeg): the input is
written to a private temporary folder, ``python -m nsn2n denoise ... --progress json``
trains there at full speed, and a reader thread turns its JSON lines into events.

Whoever owns the run calls :meth:`EngineRun.poll` on the main thread (the widget from a
``qt.QTimer``, tests directly); callbacks therefore always run on the main thread, where
the result may be written into the scene.  Cancel terminates the process; the temporary
folder is removed on every way out.  Needs neither Qt nor MRML.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional

# How long a terminated run may take to end before it is killed.
CANCEL_GRACE_SECONDS = 1.0
_STDERR_LINES = 40  # kept for the error message and its details


class EngineError(RuntimeError):
    """The engine's process failed; ``details`` holds the end of what it printed."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


def engine_python() -> str:
    """The Python that runs the engine: Slicer's ``PythonSlicer`` launcher (which sets
    up Slicer's libraries; ``sys.executable`` is the application itself there), else
    this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def engine_environment(base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """``base`` (default: this process's environment) with the folder holding the
    ``nsn2n`` package first on PYTHONPATH, so the child imports the engine that ships
    with this module."""
    import nsn2n

    environment = dict(os.environ if base is None else base)
    package_parent = str(Path(nsn2n.__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_parent, environment.get("PYTHONPATH")) if p)
    environment.setdefault("PYTHONIOENCODING", "utf-8")
    return environment


def _hidden_console() -> Dict:
    """No console window flashing up on Windows (as ``slicer.util.launchConsoleProcess``)."""
    if os.name != "nt":
        return {}
    return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}


def progress_of(line: str):
    """A ``runtime.Progress`` from one JSON progress line of the command, else None."""
    from nsn2n.runtime import Progress

    try:
        data = json.loads(line)
        return Progress(data["phase"], int(data["step"]), int(data["total"]),
                        _number(data.get("loss")), float(data["elapsed"]),
                        _number(data.get("remaining")))
    except (ValueError, KeyError, TypeError):
        return None


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def failure_of(returncode: int, stderr_lines: List[str]) -> Exception:
    """One readable error from the command's exit status and the end of its stderr."""
    from nsn2n.cli import ERROR_PREFIX, EXIT_BAD_INPUT
    from nsn2n.errors import InputError

    lines = [line.strip() for line in stderr_lines if line.strip()]
    details = "\n".join(lines)
    said = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if said:
        message = said[-1][len(ERROR_PREFIX):].strip()
        return InputError(message) if returncode == EXIT_BAD_INPUT else \
            EngineError(message, details)
    last = lines[-1] if lines else "no message"
    return EngineError(f"the denoising process stopped (exit status {returncode}): {last}",
                       details)


class EngineRun:
    """One ``nsn2n denoise`` run of ``volume`` with ``options`` in a child process.

    Events (``progress`` with a ``runtime.Progress``, then one of ``done`` with
    ``(array, report)``, ``error`` with an exception, ``cancelled``) reach the handlers
    through :meth:`poll`.  The first progress event has the phase ``estimate``: its
    ``remaining`` is the run's expected seconds, measured by the child on its device.
    """

    def __init__(self, volume, options, *, on_progress: Optional[Callable] = None,
                 on_done: Optional[Callable] = None, on_error: Optional[Callable] = None,
                 on_cancelled: Optional[Callable] = None, python: Optional[str] = None,
                 environment: Optional[Mapping[str, str]] = None):
        self._volume = volume
        self._options = options
        self._python = python or engine_python()
        self._environment = engine_environment(environment)
        self._events: "queue.Queue" = queue.Queue()
        self._handlers = {"progress": on_progress, "done": on_done, "error": on_error,
                          "cancelled": on_cancelled}
        self._stderr: "collections.deque" = collections.deque(maxlen=_STDERR_LINES)
        self._cancelled = threading.Event()
        self._process: Optional[subprocess.Popen] = None
        self._reader: Optional[threading.Thread] = None
        self._stderr_reader: Optional[threading.Thread] = None
        self.folder: Optional[Path] = None
        self.finished = False

    def start(self) -> "EngineRun":
        from nsn2n.cli import arguments_for
        from nsn2n.volume import write_volume

        self.folder = Path(tempfile.mkdtemp(prefix="nsn2n-run-"))
        try:
            source = write_volume(self._volume, self.folder / "input.nrrd")
            self._volume = None  # the file holds it now
            command = [self._python, "-m", "nsn2n", "denoise", str(source),
                       str(self.folder / "output.nrrd"), "--progress", "json",
                       "--report", str(self.folder / "report.json"),
                       *arguments_for(self._options)]
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=self._environment, cwd=str(self.folder),
                text=True, encoding="utf-8", errors="replace", **_hidden_console())
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True,
                                               name="NSN2NDenoise stderr")
        self._stderr_reader.start()
        self._reader = threading.Thread(target=self._read, name="NSN2NDenoise",
                                        daemon=True)
        self._reader.start()
        return self

    def _read_stderr(self) -> None:
        for line in self._process.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _read(self) -> None:
        try:
            for line in self._process.stdout:
                progress = progress_of(line)
                if progress is not None:
                    self._events.put(("progress", progress))
            outcome = self._outcome(self._process.wait())
        except BaseException as exc:  # reported, not lost on a dead thread
            outcome = ("error", exc)
        finally:  # the folder is gone before anyone hears the run ended
            shutil.rmtree(self.folder, ignore_errors=True)
        self._events.put(outcome)

    def _outcome(self, returncode: int):
        from nsn2n.cli import EXIT_CANCELLED, EXIT_OK
        from nsn2n.methods import report_from_dict
        from nsn2n.volume import read_volume

        if self._cancelled.is_set() or returncode == EXIT_CANCELLED:
            return "cancelled", None
        if returncode != EXIT_OK:
            self._stderr_reader.join(1.0)  # the pipe ends with the process
            return "error", failure_of(returncode, list(self._stderr))
        with open(self.folder / "report.json", encoding="utf-8") as handle:
            report = report_from_dict(json.load(handle))
        return "done", (read_volume(self.folder / "output.nrrd").array, report)

    def cancel(self) -> None:
        """Stop the process now (it exits within :data:`CANCEL_GRACE_SECONDS`, or is
        killed); the ``cancelled`` event follows through :meth:`poll`."""
        self._cancelled.set()
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        threading.Thread(target=self._kill_if_alive, daemon=True).start()

    def _kill_if_alive(self) -> None:
        try:
            self._process.wait(CANCEL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()

    def poll(self) -> bool:
        """Dispatch queued events on the calling thread; True while the run goes on.

        Only the newest progress event of a batch is dispatched (the panel needs the
        current state, not a replay of every step), except an ``estimate``, which is
        always delivered.
        """
        latest_progress = None

        def flush_progress():
            if latest_progress is not None and self._handlers["progress"]:
                self._handlers["progress"](latest_progress)

        while not self.finished:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "progress":
                if latest_progress is not None and latest_progress.phase == "estimate":
                    flush_progress()
                latest_progress = payload
                continue
            flush_progress()
            latest_progress = None
            self.finished = True
            if kind == "done" and self._cancelled.is_set():
                kind, payload = "cancelled", None  # cancelled after the process ended
            handler = self._handlers[kind]
            if handler is None:
                if kind == "error":
                    raise payload
            elif kind == "cancelled":
                handler()
            else:
                handler(payload)
        flush_progress()
        return not self.finished

    def wait(self, timeout: Optional[float] = None) -> None:
        """Block until the process has ended and its outcome is queued (events still
        need a :meth:`poll`)."""
        if self._reader is not None:
            self._reader.join(timeout)

    def discard(self, timeout: Optional[float] = None) -> None:
        """Cancel, wait for the process and drop its events: nothing reaches the
        handlers."""
        self.cancel()
        self.wait(timeout)
        self._handlers = dict.fromkeys(self._handlers)
        self.finished = True
