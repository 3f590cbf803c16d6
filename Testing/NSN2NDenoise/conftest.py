"""Fixtures on a real MRML scene from the slicer-core wheel (no Slicer application)."""

import sys
import types
import unittest

import numpy as np
import pytest

from Testing.NSN2NDenoise.mrml_helpers import add_volume, slicer


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture
def ct_node(scene, phantom):
    """An int16 CT in HU with window/level, a parent transform and a study folder."""
    rng = np.random.default_rng(0)
    hu = np.rint(phantom * 1200 - 1000 + rng.normal(0, 40, phantom.shape)).astype(np.int16)
    node = add_volume(scene, hu)
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(80, 40)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    node.SetAndObserveTransformNodeID(transform.GetID())
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "Study 1")
    hierarchy.SetItemParent(hierarchy.GetItemByDataNode(node), study)
    return node


class FakeTimer:
    """qt.QTimer as the panel uses it; tests fire it by calling the connected slot."""

    def __init__(self):
        self.active, self.slot = False, None

    def setInterval(self, ms):
        pass

    def connect(self, signal, slot):
        self.slot = slot

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


@pytest.fixture
def module(monkeypatch):
    """NSN2NDenoise.py imported with stand-ins for what needs the Slicer application (qt,
    i18n, parameterNodeWrapper, ScriptedLoadableModule); MRML is slicer-core's."""
    class Base:
        def __init__(self, *args, **kwargs):
            pass

    stubs = {
        "qt": types.SimpleNamespace(QTimer=FakeTimer),
        "slicer.i18n": types.SimpleNamespace(
            tr=lambda text: text, translate=lambda context, text: (context, text)),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            Choice=lambda values: ("Choice", values),
            WithinRange=lambda low, high: ("WithinRange", low, high),
            parameterNodeWrapper=lambda cls: cls),
        "slicer.ScriptedLoadableModule": types.SimpleNamespace(
            ScriptedLoadableModule=Base, ScriptedLoadableModuleLogic=Base,
            ScriptedLoadableModuleWidget=Base, ScriptedLoadableModuleTest=unittest.TestCase),
    }
    for name, stub in stubs.items():
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        sys.modules[name].__dict__.update(vars(stub))
    monkeypatch.delitem(sys.modules, "NSN2NDenoise", raising=False)
    monkeypatch.delitem(sys.modules, "NSN2NDenoiseLib.viewing", raising=False)
    monkeypatch.delitem(sys.modules, "NSN2NDenoiseLib.dependencies", raising=False)
    import NSN2NDenoise

    return NSN2NDenoise
