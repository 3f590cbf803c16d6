import pytest

from NSN2NDenoiseLib.state import ProcessingState, State


def test_happy_path_and_button():
    s = ProcessingState()
    assert s.apply_text == "Denoise" and s.inputs_enabled and not s.busy
    s.handle("start")
    assert s.state is State.RUNNING and s.apply_text == "Cancel" and s.apply_enabled
    assert not s.inputs_enabled and s.busy
    s.handle("finish")
    assert s.state is State.IDLE


def test_cancel_path():
    s = ProcessingState()
    s.handle("start")
    s.handle("cancel")
    assert s.state is State.CANCELLING and not s.apply_enabled and s.apply_text == "Cancelling..."
    s.handle("cancelled")
    assert s.state is State.IDLE


def test_failure_then_retry():
    s = ProcessingState()
    s.handle("start")
    s.handle("fail")
    assert s.state is State.FAILED and s.inputs_enabled and s.apply_text == "Denoise"
    s.handle("start")
    assert s.state is State.RUNNING


@pytest.mark.parametrize("state, event", [(State.IDLE, "cancel"), (State.IDLE, "finish"),
                                          (State.RUNNING, "start"), (State.CANCELLING, "start")])
def test_invalid_transitions_raise(state, event):
    s = ProcessingState()
    s.state = state
    with pytest.raises(ValueError):
        s.handle(event)
