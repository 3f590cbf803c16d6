"""A denoising run on a background thread, reporting through a queue.

The worker gets only numpy arrays and plain values and never touches MRML, VTK or Qt.
Whoever owns the job calls :meth:`DenoiseJob.poll` on the main thread (the widget from a
``qt.QTimer``, tests directly); callbacks therefore always run on the main thread, where
the result may be written into the scene.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Optional


class DenoiseJob:
    """Runs ``work(progress, cancel)`` on a thread; events come back through :meth:`poll`."""

    def __init__(self, work: Callable, on_progress: Optional[Callable] = None,
                 on_done: Optional[Callable] = None, on_error: Optional[Callable] = None,
                 on_cancelled: Optional[Callable] = None):
        self._work = work
        self._events: "queue.Queue" = queue.Queue()
        self.cancel_event = threading.Event()
        self._handlers = {"progress": on_progress, "done": on_done, "error": on_error,
                          "cancelled": on_cancelled}
        self._thread = threading.Thread(target=self._run, name="NSN2NDenoise", daemon=True)
        self.finished = False

    def start(self) -> "DenoiseJob":
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()

    def _run(self) -> None:
        from nsn2n.errors import Cancelled

        try:
            result = self._work(lambda p: self._events.put(("progress", p)), self.cancel_event)
        except Cancelled:
            self._events.put(("cancelled", None))
        except BaseException as exc:  # reported, not lost on a dead thread
            self._events.put(("error", exc))
        else:
            self._events.put(("done", result))

    def poll(self) -> bool:
        """Dispatch queued events on the calling thread; True while the job is still running.

        Only the newest progress event of a batch is dispatched: the panel needs the
        current state, not a replay of every step.
        """
        latest_progress = None

        def flush_progress():
            if latest_progress is not None and self._handlers["progress"]:
                self._handlers["progress"](latest_progress)

        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "progress":
                latest_progress = payload
                continue
            flush_progress()
            latest_progress = None
            self.finished = True
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
        """Block until the worker thread ends (events still need a :meth:`poll`)."""
        self._thread.join(timeout)

    def discard(self, timeout: Optional[float] = None) -> None:
        """Cancel, wait for the worker and drop its events: nothing reaches the handlers."""
        self.cancel()
        self.wait(timeout)
        self._handlers = dict.fromkeys(self._handlers)
        self.finished = True
