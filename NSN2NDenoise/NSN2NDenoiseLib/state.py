"""The panel's processing state machine, free of Qt so it can be tested anywhere.

idle --start--> running --finish--> idle
                running --cancel--> cancelling --finish/cancelled--> idle
                running --fail--> failed --start--> running
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"
    FAILED = "failed"


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
        return {State.RUNNING: "Cancel", State.CANCELLING: "Cancelling..."}.get(
            self.state, "Denoise")

    @property
    def apply_enabled(self) -> bool:
        """Cancel stays clickable while running; a second click while cancelling does nothing."""
        return self.state != State.CANCELLING

    @property
    def inputs_enabled(self) -> bool:
        return not self.busy
