"""The panel's processing state machine, free of Qt so it can be tested anywhere.

idle --start--> running --finish--> idle
                running --cancel--> cancelling --finish/cancelled--> idle
                running --fail--> failed --start--> running
idle/failed --install--> installing --installed--> idle   (torch being installed)
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"
    FAILED = "failed"
    INSTALLING = "installing"  # torch is being installed: nothing may start meanwhile


_TRANSITIONS = {
    ("start", State.IDLE): State.RUNNING,
    ("start", State.FAILED): State.RUNNING,
    ("cancel", State.RUNNING): State.CANCELLING,
    ("finish", State.RUNNING): State.IDLE,
    ("finish", State.CANCELLING): State.IDLE,  # finished before the cancel took effect
    ("cancelled", State.CANCELLING): State.IDLE,
    ("cancelled", State.RUNNING): State.IDLE,  # cancelled from outside (scene closed)
    ("fail", State.RUNNING): State.FAILED,
    ("fail", State.CANCELLING): State.FAILED,
    ("install", State.IDLE): State.INSTALLING,
    ("install", State.FAILED): State.INSTALLING,
    ("installed", State.INSTALLING): State.IDLE,
}


class ProcessingState:
    """Current state plus what the panel shows for it."""

    def __init__(self):
        self.state = State.IDLE

    def handle(self, event: str) -> State:
        key = (event, self.state)
        if key not in _TRANSITIONS:
            raise ValueError(f"event {event!r} is not valid in state {self.state.value!r}")
        self.state = _TRANSITIONS[key]
        return self.state

    @property
    def busy(self) -> bool:
        return self.state in (State.RUNNING, State.CANCELLING)

    @property
    def apply_text(self) -> str:
        return {State.RUNNING: "Cancel", State.CANCELLING: "Cancelling...",
                State.INSTALLING: "Installing PyTorch..."}.get(self.state, "Denoise")

    @property
    def apply_enabled(self) -> bool:
        """Cancel stays clickable while running; a second click while cancelling or
        installing does nothing (the installer runs Qt events: a click would start a
        second install)."""
        return self.state not in (State.CANCELLING, State.INSTALLING)

    @property
    def inputs_enabled(self) -> bool:
        return not self.busy and self.state != State.INSTALLING

    @property
    def shows_progress(self) -> bool:
        """The progress bar belongs to a run in progress, never to one that ended."""
        return self.busy


def progress_text(progress, tr=str) -> str:
    """The progress bar's text for a ``runtime.Progress``; ``tr`` translates (Slicer's
    ``slicer.i18n.tr`` in the panel)."""
    phase = {"prepare": tr("Preparing"), "train": tr("Training"), "predict": tr("Denoising"),
             "refine": tr("Refining")}.get(progress.phase, progress.phase)
    text = f"{phase} {progress.step}/{progress.total}"
    if progress.loss == progress.loss:  # NaN: no loss in this phase
        text += tr(", loss {loss:.5f}").format(loss=progress.loss)
    if progress.remaining == progress.remaining:
        text += tr(", about {s:.0f} s left").format(s=progress.remaining)
    return text
