"""NSN2NDenoise: self-supervised denoising of one volume, as a 3D Slicer module.

The module, a thin Qt panel, and its self-test.  The work lives in NSN2NDenoiseLib
(Qt-free logic, background job, state machine) and in the engine package nsn2n.
"""

import time

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest,
                                           ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin
from typing import Annotated

from NSN2NDenoiseLib.dependencies import ensureTorch
from NSN2NDenoiseLib.logic import NSN2NDenoiseLogic, panel_options
from NSN2NDenoiseLib.state import ProcessingState
from NSN2NDenoiseLib.viewing import showBeforeAfter
from nsn2n.options import BIAS_CORRECTION, METHODS, PRESETS, SLICE_AXES

README_URL = "https://github.com/NSN2NDenoise/SlicerNSN2NDenoise#readme"


class NSN2NDenoise(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("NSN2N Denoise")
        self.parent.categories = [_("Filtering")]
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
    inputVolume: slicer.vtkMRMLScalarVolumeNode
    outputVolume: slicer.vtkMRMLScalarVolumeNode
    # The options' fields share DenoiseOptions' names (NSN2NDenoiseLib.logic.panel_options).
    # A series is a sequence node in Slicer, not a scalar volume: the series method is the
    # command's and the Python API's.
    method: Annotated[str, Choice([m for m in METHODS if m != "series"])] = "auto"
    preset: Annotated[str, Choice(list(PRESETS))] = "balanced"
    seed: int = 0
    slice_axis: Annotated[str, Choice(list(SLICE_AXES))] = "auto"
    steps: int = 0  # 0: the preset's
    bias_correction: Annotated[str, Choice(list(BIAS_CORRECTION))] = "auto"


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

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NSN2NDenoise.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.progressBar.hide()
        # Devices are a property of this machine, not of the scene: not a parameter.
        for value, label in NSN2NDenoiseLogic.deviceChoices():
            self.ui.deviceComboBox.addItem(label, value)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.opacitySlider.connect("valueChanged(double)", self.onOpacityChanged)
        self.initializeParameterNode()

    def cleanup(self):
        """Module reload or application exit: stop the worker first."""
        self._stopJob()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        """Leaving the module cancels a running job (the panel showing it goes away)."""
        self._stopJob()
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

    def onApplyButton(self):
        if self.processing.busy:
            self.processing.handle("cancel")
            self.logic.cancel()
            self._updateButtons()
            return
        if not ensureTorch():
            return
        p = self._parameterNode
        options = panel_options(p, self.ui.deviceComboBox.currentData)
        estimated = None
        with slicer.util.tryWithErrorDisplay(_("Could not estimate the run time."),
                                             waitCursor=True):
            estimated = self.logic.estimate(p.inputVolume, options)
        if estimated is None or not self._confirmLongRun(estimated.seconds):
            return
        self.ui.statusLabel.text = _("Expected to take about {s:.0f} s.").format(
            s=estimated.seconds)
        with slicer.util.tryWithErrorDisplay(_("Could not start denoising."), waitCursor=True):
            self.logic.process(p.inputVolume, p.outputVolume, waitForCompletion=False,
                               progressCallback=self._onProgress, onFinished=self._onFinished,
                               onError=self._onError, onCancelled=self._onCancelled,
                               estimated=estimated, options=options)
            self.processing.handle("start")
            self.ui.progressBar.show()
            self._timer.start()
        self._updateButtons()

    def _confirmLongRun(self, seconds):
        if seconds < 60:
            return True
        return slicer.util.confirmOkCancelDisplay(
            _("Denoising will take about {minutes} minutes on this computer. "
              "Continue?").format(minutes=max(1, round(seconds / 60))))

    def _poll(self):
        running = self.logic.poll()
        time.sleep(0.01)  # PythonQt keeps the GIL in the event loop: let the worker run
        if not running:
            self._timer.stop()
            self.ui.progressBar.hide()

    def _onProgress(self, p):
        phase = {"prepare": _("Preparing"), "train": _("Training"), "predict": _("Denoising"),
                 "refine": _("Refining")}
        self.ui.progressBar.setMaximum(max(p.total, 1))
        self.ui.progressBar.setValue(min(p.step, p.total))
        left = "" if p.remaining != p.remaining else _(", about {s:.0f} s left").format(s=p.remaining)
        loss = "" if p.loss != p.loss else _(", loss {loss:.5f}").format(loss=p.loss)
        self.ui.progressBar.setFormat(f"{phase.get(p.phase, p.phase)} {p.step}/{p.total}{loss}{left}")

    def _onFinished(self, node, report):
        self.processing.handle("finish")
        if self._parameterNode:
            self._parameterNode.outputVolume = node
            showBeforeAfter(self._parameterNode.inputVolume, node, self.ui.opacitySlider.value)
        self.ui.statusLabel.text = _("Done in {s:.0f} s on {device}. {detail}").format(
            s=report.total_seconds, device=report.device, detail=report.summary())
        self._updateButtons()
        if report.warning:
            slicer.util.warningDisplay(report.warning, windowTitle=_("Check the output"))

    def _onError(self, error):
        self.processing.handle("fail")
        self._updateButtons()
        slicer.util.errorDisplay(_("Denoising failed: {error}").format(error=error),
                                 detailedText=repr(error))

    def _onCancelled(self):
        self.processing.handle("cancelled")
        self.ui.statusLabel.text = _("Cancelled; the scene is unchanged.")
        self._updateButtons()

    def onOpacityChanged(self, value):
        for name in slicer.app.layoutManager().sliceViewNames():
            composite = slicer.app.layoutManager().sliceWidget(name).mrmlSliceCompositeNode()
            composite.SetForegroundOpacity(value)

    def _stopJob(self):
        if self.logic.busy:
            self.logic.cancelAndWait()
        if self.processing.busy:
            self.processing.handle("cancelled")
        self._timer.stop()


class NSN2NDenoiseTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: denoise the bundled small MRI sample for a few CPU iterations."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_denoise_sample_few_iterations()

    def test_denoise_sample_few_iterations(self):
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
