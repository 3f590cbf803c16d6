"""Fixtures on a real MRML scene from the slicer-core wheel (no Slicer application)."""

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
