"""The panel's flow, driven as a user would click it: the widget of NSN2NDenoise.py with
plain stand-ins for its Qt widgets and dialogs, the real logic, the real engine process
and a slicer-core scene.  What needs the Slicer application itself (layouts, the GIL
held by PythonQt's event loop) is not covered here."""

import contextlib
import time
import types

import numpy as np
import pytest

from Testing.NSN2NDenoise.mrml_helpers import add_volume, slicer


class Dialogs:
    """slicer.util's dialogs, recorded; ``confirm`` is the user's answer."""

    def __init__(self, confirm=True):
        self.confirm, self.shown, self.errors = confirm, [], []

    def confirmOkCancelDisplay(self, text, *args, **kwargs):
        self.shown.append(text)
        return self.confirm

    def errorDisplay(self, text, *args, **kwargs):
        self.errors.append(text)

    def warningDisplay(self, text, *args, **kwargs):
        self.shown.append(text)

    @contextlib.contextmanager
    def tryWithErrorDisplay(self, message="", waitCursor=False):
        try:
            yield
        except Exception as error:
            self.errors.append(f"{message} {error}")


class ProgressBar:
    def __init__(self):
        self.visible, self.text, self.range = False, "", (0, 100)

    def setRange(self, low, high):
        self.range = (low, high)

    def setValue(self, value):
        self.value = value

    def setFormat(self, text):
        self.text = text


class DeviceCombo:
    def __init__(self):
        self.items, self.index = [("CPU", "cpu")], 0

    @property
    def currentData(self):
        return self.items[self.index][1]

    def clear(self):
        self.items, self.index = [], -1

    def addItem(self, label, value):
        self.items.append((label, value))

    def findData(self, value):
        return next((n for n, (_, v) in enumerate(self.items) if v == value), -1)

    def setCurrentIndex(self, index):
        self.index = index


@pytest.fixture
def panel(module, monkeypatch, scene, ct_node):
    dialogs = Dialogs()
    for name in ("confirmOkCancelDisplay", "errorDisplay", "warningDisplay",
                 "tryWithErrorDisplay"):
        monkeypatch.setattr(slicer.util, name, getattr(dialogs, name))
    shown = []
    monkeypatch.setattr(module, "showBeforeAfter", lambda *nodes: shown.append(nodes))
    monkeypatch.setattr(module, "ensureTorch", lambda: True)
    widget = module.NSN2NDenoiseWidget()
    widget.ui = types.SimpleNamespace(
        applyButton=types.SimpleNamespace(text="", enabled=True),
        parametersCollapsibleButton=types.SimpleNamespace(enabled=True),
        advancedCollapsibleButton=types.SimpleNamespace(enabled=True),
        progressBar=ProgressBar(), statusLabel=types.SimpleNamespace(text=""),
        deviceComboBox=DeviceCombo(),
        opacitySlider=types.SimpleNamespace(value=0.5))
    widget._parameterNode = types.SimpleNamespace(
        inputVolume=ct_node, outputVolume=None, method="auto", preset="fast", steps=4,
        seed=0, slice_axis="auto", bias_correction="auto", noise_sigma=0.0)
    widget._updateButtons()
    return types.SimpleNamespace(widget=widget, dialogs=dialogs, shown=shown, scene=scene,
                                 input=ct_node)


def run_timer(widget, until=lambda: False, timeout=180):
    deadline = time.monotonic() + timeout
    while widget._timer.active and not until():
        assert time.monotonic() < deadline, "the panel never left its running state"
        widget._timer.slot()
        time.sleep(0.01)


def test_denoise_shows_progress_then_the_result_and_comes_back_ready(panel):
    w = panel.widget
    assert w.ui.applyButton.text == "Denoise" and not w.ui.progressBar.visible
    w.onApplyButton()
    assert panel.dialogs.errors == []
    assert w.ui.applyButton.text == "Cancel" and w.ui.applyButton.enabled
    assert w.ui.progressBar.visible and not w.ui.parametersCollapsibleButton.enabled
    run_timer(w)
    assert panel.dialogs.errors == []
    (before, after, opacity), = panel.shown
    assert before is panel.input and after.IsA("vtkMRMLScalarVolumeNode") and opacity == 0.5
    assert w._parameterNode.outputVolume is after
    assert w.ui.statusLabel.text.startswith("Done in") and "noise" in w.ui.statusLabel.text
    assert w.ui.applyButton.text == "Denoise" and not w.ui.progressBar.visible
    assert w.ui.parametersCollapsibleButton.enabled
    assert w.ui.deviceComboBox.currentData == "cpu"  # kept when the list is filled again
    assert [v for _, v in w.ui.deviceComboBox.items][:2] == ["auto", "cpu"]


def test_cancel_during_training_leaves_the_scene_as_it_was(panel):
    w = panel.widget
    w._parameterNode.steps = 100000
    nodes = panel.scene.GetNumberOfNodes()
    w.onApplyButton()
    run_timer(w, until=lambda: w.ui.progressBar.text.startswith("Training"))
    w.onApplyButton()  # the button says Cancel now
    assert w.ui.applyButton.text == "Cancelling..." and not w.ui.applyButton.enabled
    asked = time.monotonic()
    run_timer(w, timeout=10)
    assert time.monotonic() - asked < 2.0
    assert w.ui.statusLabel.text.startswith("Cancelled") and w.processing.state.value == "idle"
    assert panel.scene.GetNumberOfNodes() == nodes and panel.shown == []
    assert not w.ui.progressBar.visible  # nothing of the run stays on the panel


def test_a_long_run_asks_first_and_a_no_cancels_it(panel):
    w = panel.widget
    w._parameterNode.steps = 100000
    panel.dialogs.confirm = False
    nodes = panel.scene.GetNumberOfNodes()
    w.onApplyButton()
    run_timer(w, timeout=60)
    question, = panel.dialogs.shown
    assert "minutes on this computer" in question
    assert w.ui.statusLabel.text.startswith("Cancelled")
    assert panel.scene.GetNumberOfNodes() == nodes


def test_an_error_in_the_engine_is_one_message_and_the_panel_can_start_again(panel):
    w = panel.widget
    w._parameterNode.inputVolume = add_volume(panel.scene, np.arange(2 * 9 * 9, dtype=np.int16)
                                              .reshape(2, 9, 9), name="two slices")
    w._parameterNode.method = "nsn2n"
    w.onApplyButton()
    run_timer(w, timeout=60)
    error, = panel.dialogs.errors
    assert error.startswith("Denoising failed:") and "slice" in error and "\n" not in error
    assert w.processing.state.value == "failed" and w.ui.applyButton.text == "Denoise"
    assert not w.ui.progressBar.visible and w.ui.parametersCollapsibleButton.enabled


def test_bad_input_before_the_run_is_shown_and_nothing_starts(panel):
    w = panel.widget
    w._parameterNode.outputVolume = panel.input  # output = input
    w.onApplyButton()
    error, = panel.dialogs.errors
    assert "must differ" in error and not w._timer.active
    assert w.processing.state.value == "idle" and w.ui.applyButton.text == "Denoise"


def test_no_second_click_while_torch_installs(panel, module, monkeypatch):
    w = panel.widget
    seen = []

    def installing():
        seen.append((w.ui.applyButton.enabled, w.ui.applyButton.text))
        return False  # declined

    monkeypatch.setattr(module, "ensureTorch", installing)
    w.onApplyButton()
    assert seen == [(False, "Installing PyTorch...")]
    assert w.ui.applyButton.enabled and w.processing.state.value == "idle"
