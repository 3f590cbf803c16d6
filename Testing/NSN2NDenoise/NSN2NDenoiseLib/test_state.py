import pytest

from NSN2NDenoiseLib.state import ProcessingState, State, progress_text


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


def test_installing_torch_blocks_the_button_and_the_inputs():
    s = ProcessingState()
    s.handle("install")
    assert s.state is State.INSTALLING and not s.apply_enabled and not s.inputs_enabled
    with pytest.raises(ValueError):
        s.handle("start")  # a second click cannot start anything meanwhile
    with pytest.raises(ValueError):
        s.handle("install")
    s.handle("installed")
    assert s.state is State.IDLE and s.apply_enabled


def test_the_progress_bar_shows_only_while_a_run_is_in_progress():
    s = ProcessingState()
    assert not s.shows_progress
    s.handle("start")
    assert s.shows_progress
    s.handle("cancel")
    assert s.shows_progress
    s.handle("cancelled")
    assert not s.shows_progress  # also after leaving and re-entering the module
    s.handle("start")
    s.handle("fail")
    assert not s.shows_progress


def test_progress_text_names_the_phase_and_leaves_out_what_is_not_known():
    from nsn2n.runtime import Progress

    nan = float("nan")
    assert progress_text(Progress("train", 3, 700, 0.01234, 5.0, 42.4)) == \
        "Training 3/700, loss 0.01234, about 42 s left"
    assert progress_text(Progress("predict", 1, 8, nan, 1.0, nan)) == "Denoising 1/8"
    assert progress_text(Progress("restore", 1, 2, nan, 1.0, 3.0)) == \
        "restore 1/2, about 3 s left"
    assert progress_text(Progress("train", 1, 2, nan, 0, nan), tr=str.upper) == "TRAINING 1/2"
