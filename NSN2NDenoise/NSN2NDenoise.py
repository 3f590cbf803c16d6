"""NSN2NDenoise: self-supervised denoising of one volume, as a 3D Slicer module.

The module, a thin Qt panel, and its self-test.  The work lives in NSN2NDenoiseLib
(Qt-free logic, background job, state machine) and in the engine package nsn2n.
"""

import time

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from typing import Annotated, Union

from NSN2NDenoiseLib.dependencies import ensureTorch
from NSN2NDenoiseLib.logic import NSN2NDenoiseLogic, panel_options
from NSN2NDenoiseLib.state import ProcessingState, State, progress_text
from NSN2NDenoiseLib.viewing import setForegroundOpacity, showBeforeAfter
from nsn2n.options import BIAS_CORRECTION, METHODS, PRESETS, SLICE_AXES

README_URL = "https://github.com/NSN2NDenoise/SlicerNSN2NDenoise#readme"
MAX_SEED, MAX_STEPS, MAX_NOISE_SIGMA = 2 ** 31 - 1, 100000, 1e6  # as the .ui's spin boxes


class NSN2NDenoise(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("NSN2N Denoise")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["NSN2NDenoise developers"]
        self.parent.helpText = _(
            "Removes noise from one CT or MRI volume without clean data: a small network is "
            "trained on the noisy volume itself (Neighboring Slice Noise2Noise). "
            f'See the <a href="{README_URL}">documentation</a>.')
        self.parent.acknowledgementText = _(
            "Methods: L. Zhou et al., Neighboring Slice Noise2Noise: Self-Supervised Medical "
            "Image Denoising from Single Noisy Image Volume, arXiv:2411.10831; X. Li, N. Navab, "
            "Z. Jiang, Speckle2Self: Self-Supervised Ultrasound Speckle Reduction Without Clean "
            "Data, arXiv:2507.06828.")


@parameterNodeWrapper
class NSN2NDenoiseParameterNode:
    # Vector volumes are RGB ultrasound exports (Speckle2Self converts them to gray);
    # sequences (cines, fMRI, DWI) give a new sequence (NSN2NDenoiseLib.sequences).
    inputVolume: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLVectorVolumeNode,
                       slicer.vtkMRMLSequenceNode]
    outputVolume: slicer.vtkMRMLScalarVolumeNode
    # DenoiseOptions' names (logic.panel_options); "auto" picks series for a sequence.
    method: Annotated[str, Choice([m for m in METHODS if m != "series"])] = "auto"
    preset: Annotated[str, Choice(list(PRESETS))] = "balanced"
    # Without a range the GUI connector widens the spin boxes to +-2**31, losing the .ui's
    # limits and the "from preset" text shown at the minimum.
    seed: Annotated[int, WithinRange(0, MAX_SEED)] = 0
    slice_axis: Annotated[str, Choice(list(SLICE_AXES))] = "auto"
    steps: Annotated[int, WithinRange(0, MAX_STEPS)] = 0  # 0: the preset's
    bias_correction: Annotated[str, Choice(list(BIAS_CORRECTION))] = "auto"
    noise_sigma: Annotated[float, WithinRange(0.0, MAX_NOISE_SIGMA)] = 0.0  # 0: estimated


class _ParameterNodeLogic(ScriptedLoadableModuleLogic):
    """Finds or creates this module's parameter node (processing is NSN2NDenoiseLogic's)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.moduleName = "NSN2NDenoise"


class NSN2NDenoiseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = NSN2NDenoiseLogic()
        self.processing = ProcessingState()
        self._parameterNode = None
        self._guiTag = None
        self._timer = qt.QTimer()
        self._timer.setInterval(50)
        self._timer.connect("timeout()", self._poll)
        self._polling = False
        self._runInput = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NSN2NDenoise.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        # The engine's process gets the environment Slicer started in (PythonSlicer
        # adds Slicer's own paths to it), as slicer.util.launchConsoleProcess does.
        self.logic.environment = slicer.util.startupEnvironment()
        self._fillDevices()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.opacitySlider.connect("valueChanged(double)", setForegroundOpacity)
        self.initializeParameterNode()

    def _fillDevices(self):
        """Devices are a property of this machine, not of the scene: not a parameter.
        Filled again once torch is installed (GPUs are found through torch)."""
        current = self.ui.deviceComboBox.currentData
        self.ui.deviceComboBox.clear()
        for value, label in NSN2NDenoiseLogic.deviceChoices():
            self.ui.deviceComboBox.addItem(label, value)
        self.ui.deviceComboBox.setCurrentIndex(max(0, self.ui.deviceComboBox.findData(current)))

    def cleanup(self):
        """Module reload or application exit: stop the engine's process first."""
        self._stopJob()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        """A run goes on in its own process while another module is shown."""
        self._setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self._stopJob()
        self._setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        node = NSN2NDenoiseParameterNode(_ParameterNodeLogic().getParameterNode())
        if not node.inputVolume:
            node.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        self._setParameterNode(node)

    def _setParameterNode(self, node):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._guiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent,
                                self._updateButtons)
        self._parameterNode = node
        if node:
            self._guiTag = node.connectGui(self.ui)
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._updateButtons()

    def _updateButtons(self, caller=None, event=None):
        state = self.processing
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.text = _(state.apply_text)
        self.ui.applyButton.enabled = state.apply_enabled and (ready or state.busy)
        self.ui.parametersCollapsibleButton.enabled = state.inputs_enabled
        self.ui.advancedCollapsibleButton.enabled = state.inputs_enabled
        self.ui.progressBar.visible = state.shows_progress

    def onApplyButton(self):
        with slicer.util.tryWithErrorDisplay(_("Could not start denoising."), waitCursor=True):
            if self.processing.busy:
                self._cancel()
            elif self._ensureTorch():
                self._start()
        self._updateButtons()

    def _ensureTorch(self):
        self.processing.handle("install")  # the installer runs Qt events: no second click
        self._updateButtons()
        try:
            ready = ensureTorch()
        finally:
            self.processing.handle("installed")
            self._updateButtons()
        if ready:
            self._fillDevices()
        return ready

    def _start(self):
        p = self._parameterNode
        self._runInput = p.inputVolume
        self.logic.process(p.inputVolume, p.outputVolume, waitForCompletion=False,
                           options=panel_options(p, self.ui.deviceComboBox.currentData),
                           progressCallback=self._onProgress, onFinished=self._onFinished,
                           onError=self._onError, onCancelled=self._onCancelled)
        self.processing.handle("start")
        self.ui.progressBar.setRange(0, 0)  # busy until the first step
        self.ui.progressBar.setFormat(_("Estimating the run time"))
        self.ui.statusLabel.text = ""
        self._timer.start()

    def _cancel(self):
        if self.processing.state is State.RUNNING:
            self.processing.handle("cancel")
            self.logic.cancel()
        self._updateButtons()

    def _poll(self):
        if self._polling:  # a dialog opened by an event runs Qt events: no nested poll
            return
        self._polling = True
        try:
            running = self.logic.poll()
            # PythonQt keeps the GIL between Qt events: let the threads reading the
            # engine's output run.
            time.sleep(0.005)
        except Exception as error:  # a failure in a handler must not leave the panel busy
            running = False
            self._onError(error)
        finally:
            self._polling = False
        if not running:
            self._timer.stop()
            self._updateButtons()

    def _onProgress(self, p):
        if p.phase == "estimate":
            self._onEstimate(p.remaining)
            return
        self.ui.progressBar.setRange(0, max(p.total, 1))
        self.ui.progressBar.setValue(min(p.step, p.total))
        self.ui.progressBar.setFormat(progress_text(p, _))

    def _onEstimate(self, seconds):
        self.ui.statusLabel.text = _("Expected to take about {s:.0f} s.").format(s=seconds)
        if seconds >= 60 and self.processing.state is State.RUNNING and not \
                slicer.util.confirmOkCancelDisplay(
                    _("Denoising will take about {minutes} minutes on this computer. "
                      "Continue?").format(minutes=max(1, round(seconds / 60)))):
            self._cancel()

    def _onFinished(self, node, report):
        self.processing.handle("finish")
        try:
            if not node.IsA("vtkMRMLSequenceNode"):  # a sequence shows in its browser
                if self._parameterNode:
                    self._parameterNode.outputVolume = node
                showBeforeAfter(self._runInput, node, self.ui.opacitySlider.value)
            self.ui.statusLabel.text = _("Done in {s:.0f} s on {device}. {detail}").format(
                s=report.total_seconds, device=report.device, detail=report.summary())
        finally:
            self._updateButtons()
        if report.warning:
            slicer.util.warningDisplay(report.warning, windowTitle=_("Check the output"))

    def _onError(self, error):
        if self.processing.busy:
            self.processing.handle("fail")
        self._updateButtons()
        slicer.util.errorDisplay(_("Denoising failed: {error}").format(error=error),
                                 detailedText=getattr(error, "details", "") or repr(error))

    def _onCancelled(self):
        if self.processing.busy:
            self.processing.handle("cancelled")
        self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
        self._updateButtons()

    def _stopJob(self):
        if self.logic.busy:
            self.logic.cancelAndWait()
        if self.processing.busy:
            self.processing.handle("cancelled")
        self._timer.stop()
        self._updateButtons()


class NSN2NDenoiseTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: denoise the bundled small MRI sample for a few CPU iterations."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_denoise_sample_few_iterations()

    def test_denoise_sample_few_iterations(self):
        # Slicer's extension build machines have the PyTorch extension (a dependency), not
        # torch itself: install it as a user would, without the dialog.
        self.assertTrue(ensureTorch(askConfirmation=False), "PyTorch could not be installed")
        import os

        import numpy as np
        from nsn2n.noise import estimate_noise

        path = os.path.join(os.path.dirname(__file__), "Resources", "Samples",
                            "mni152_t1_rician5_small.nrrd")
        node = slicer.util.loadVolume(path)
        out = NSN2NDenoiseLogic().process(node, steps=30, device="cpu", seed=0)
        before, after = slicer.util.arrayFromVolume(node), slicer.util.arrayFromVolume(out)
        self.assertEqual(after.shape, before.shape)
        self.assertEqual(after.dtype, before.dtype)
        self.assertNotEqual(out.GetID(), node.GetID())
        self.assertLess(estimate_noise(after.astype(np.float32), (1.0, 3.0)).sigma,
                        estimate_noise(before.astype(np.float32), (1.0, 3.0)).sigma)
        self.delayDisplay("NSN2NDenoise self-test passed")
