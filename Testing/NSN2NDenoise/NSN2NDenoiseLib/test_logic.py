import dataclasses
import threading
import time

import numpy as np
import pytest

from Testing.NSN2NDenoise.mrml_helpers import add_volume, slicer
from NSN2NDenoiseLib.logic import NSN2NDenoiseLogic
from nsn2n.errors import InputError

FAST = dict(steps=6, seed=0, device="cpu")


def matrix_of(node):
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_nodes(scene):
    return [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]


def test_new_output_keeps_geometry_type_transform_hierarchy_and_window(scene, ct_node):
    before = np.array(slicer.util.arrayFromVolume(ct_node), copy=True)
    seen = []
    out = NSN2NDenoiseLogic().process(ct_node, progressCallback=seen.append, **FAST)
    assert out is not None and out.GetScene() is scene and out.GetID() != ct_node.GetID()
    assert out.GetName() == "CT head denoised"
    np.testing.assert_allclose(matrix_of(out), matrix_of(ct_node))
    result = slicer.util.arrayFromVolume(out)
    assert result.dtype == before.dtype and result.shape == before.shape
    assert not np.array_equal(result, before)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ct_node), before)  # untouched
    assert out.GetTransformNodeID() == ct_node.GetTransformNodeID()
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(out)) == \
        hierarchy.GetItemParent(hierarchy.GetItemByDataNode(ct_node))
    shown = out.GetDisplayNode()
    assert (shown.GetWindow(), shown.GetLevel()) == (80, 40) and not shown.GetAutoWindowLevel()
    assert {p.phase for p in seen} >= {"prepare", "train", "predict"}


def test_existing_output_node_is_reused(scene, ct_node):
    existing = add_volume(scene, np.zeros((3, 4, 5), np.float32), name="target")
    count = len(volume_nodes(scene))
    out = NSN2NDenoiseLogic().process(ct_node, existing, **FAST)
    assert out is existing and len(volume_nodes(scene)) == count
    assert slicer.util.arrayFromVolume(out).shape == slicer.util.arrayFromVolume(ct_node).shape
    np.testing.assert_allclose(matrix_of(out), matrix_of(ct_node))


def test_options_by_keyword_or_as_an_object_and_unknown_options(scene, ct_node):
    from nsn2n.options import DenoiseOptions

    logic = NSN2NDenoiseLogic()
    logic.process(ct_node, steps=3, slice_axis="auto", bias_correction=False)
    assert logic.lastReport.steps == 3 and logic.lastReport.slice_axis == 0
    logic.process(ct_node, options=DenoiseOptions(steps=4, seed=1), seed=2)
    assert logic.lastReport.steps == 4 and logic.lastReport.seed == 2  # keywords win
    with pytest.raises(InputError, match="Unknown option"):
        logic.process(ct_node, iterations=3)  # the panel's old name is not an alias


def run_async(logic, node, **kwargs):
    outcome = {}
    logic.process(node, waitForCompletion=False,
                  onFinished=lambda n, r: outcome.setdefault("node", n),
                  onCancelled=lambda: outcome.setdefault("cancelled", True),
                  onError=lambda e: outcome.setdefault("error", e), **kwargs)
    return outcome


def poll_until_done(logic, timeout=60):
    deadline = time.monotonic() + timeout
    while logic.poll():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_background_run_adds_the_node_only_at_the_end(scene, ct_node):
    logic = NSN2NDenoiseLogic()
    count = len(volume_nodes(scene))
    progress = []
    outcome = run_async(logic, ct_node, progressCallback=progress.append, steps=30, seed=0,
                        device="cpu")
    assert logic.busy and len(volume_nodes(scene)) == count  # nothing added yet
    with pytest.raises(RuntimeError, match="already in progress"):
        logic.process(ct_node, **FAST)
    poll_until_done(logic)
    assert outcome["node"].GetScene() is scene and len(volume_nodes(scene)) == count + 1
    assert progress and not logic.busy


def test_cancel_leaves_the_scene_unchanged(scene, ct_node):
    logic = NSN2NDenoiseLogic()
    nodes_before = scene.GetNumberOfNodes()
    before = np.array(slicer.util.arrayFromVolume(ct_node), copy=True)
    first_step = threading.Event()
    outcome = run_async(logic, ct_node, progressCallback=lambda p: first_step.set(),
                        steps=100000, device="cpu")
    while not first_step.is_set():  # progress arrives through poll()
        logic.poll()
        time.sleep(0.01)
    logic.cancel()
    poll_until_done(logic)
    assert outcome == {"cancelled": True}
    assert scene.GetNumberOfNodes() == nodes_before
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(ct_node), before)


def test_cancel_and_wait_discards_a_running_job(scene, ct_node):
    logic = NSN2NDenoiseLogic()
    nodes_before = scene.GetNumberOfNodes()
    outcome = run_async(logic, ct_node, steps=100000, device="cpu")
    logic.cancelAndWait()
    assert not logic.busy and outcome == {} and scene.GetNumberOfNodes() == nodes_before


def test_cancel_event_in_blocking_mode(scene, ct_node):
    from nsn2n.errors import Cancelled

    cancel = threading.Event()
    cancel.set()
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(Cancelled):
        NSN2NDenoiseLogic().process(ct_node, cancelEvent=cancel, **FAST)
    assert scene.GetNumberOfNodes() == nodes_before


def test_bad_inputs_raise_clear_errors_and_add_nothing(scene, ct_node):
    logic = NSN2NDenoiseLogic()
    flat = add_volume(scene, np.random.default_rng(0).random((1, 16, 16)).astype(np.float32),
                      name="flat")
    labels = add_volume(scene, np.ones((4, 8, 8), np.uint8), name="labels",
                        node_class="vtkMRMLLabelMapVolumeNode")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    nodes_before = scene.GetNumberOfNodes()
    for node, message in [(flat, "2-D"), (labels, "label map"), (empty, "no image data"),
                          (None, "No input")]:
        with pytest.raises(InputError, match=message) as info:
            logic.process(node, **FAST)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="must differ"):
        logic.process(ct_node, ct_node, **FAST)
    with pytest.raises(InputError, match="preset"):
        logic.process(ct_node, preset="turbo")
    assert scene.GetNumberOfNodes() == nodes_before


def test_device_choices_always_offer_auto_and_cpu():
    values = [value for value, _ in NSN2NDenoiseLogic.deviceChoices()]
    assert values[:2] == ["auto", "cpu"]


def test_the_parameter_node_values_become_the_options_of_the_same_name():
    import types

    from NSN2NDenoiseLib.logic import PANEL_OPTIONS, panel_options
    from nsn2n.options import DenoiseOptions

    parameters = types.SimpleNamespace(method="auto", preset="fast", seed=7, slice_axis="2",
                                       steps=0, bias_correction="off")
    assert panel_options(parameters, None) == DenoiseOptions(
        method="auto", preset="fast", seed=7, slice_axis=2, steps=None, bias_correction=False)
    parameters.steps, parameters.bias_correction = 300, "on"
    options = panel_options(parameters, "cuda:0")
    assert options.steps == 300 and options.bias_correction is True
    assert options.device == "cuda:0"
    assert set(PANEL_OPTIONS) <= {f.name for f in dataclasses.fields(DenoiseOptions)}


def test_what_the_slicer_self_test_checks_holds_on_its_sample(scene):
    # NSN2NDenoiseTest runs only inside Slicer; this repeats its check on slicer-core.
    from pathlib import Path

    import SimpleITK as sitk
    from nsn2n.noise import estimate_noise

    path = (Path(__file__).resolve().parents[3] / "NSN2NDenoise" / "Resources" / "Samples"
            / "mni152_t1_rician5_small.nrrd")
    node = add_volume(scene, sitk.GetArrayFromImage(sitk.ReadImage(str(path))), name="sample")
    out = NSN2NDenoiseLogic().process(node, steps=30, device="cpu", seed=0)
    before, after = slicer.util.arrayFromVolume(node), slicer.util.arrayFromVolume(out)
    assert after.shape == before.shape and after.dtype == before.dtype
    assert estimate_noise(after, (1.0, 3.0)).sigma < estimate_noise(before, (1.0, 3.0)).sigma


def test_rgb_ultrasound_node_gives_a_gray_node_with_speckle2self(scene):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 200, (2, 24, 40)).astype(np.uint8)
    node = add_volume(scene, np.repeat(gray[..., None], 3, -1), name="US cine",
                      node_class="vtkMRMLVectorVolumeNode")
    logic = NSN2NDenoiseLogic()
    with pytest.raises(InputError, match="components"):
        logic.process(node, method="nsn2n", **FAST)
    out = logic.process(node, method="speckle2self", steps=2, seed=0, device="cpu")
    result = slicer.util.arrayFromVolume(out)
    assert not out.IsA("vtkMRMLVectorVolumeNode")
    assert result.shape == gray.shape and result.dtype == np.uint8
    assert np.allclose(matrix_of(out), matrix_of(node))
    assert logic.lastReport.method == "speckle2self"
    estimated = logic.estimate(node, method="speckle2self", steps=2, device="cpu")
    assert estimated.seconds > 0
    logic.process(node, method="speckle2self", steps=2, seed=0, device="cpu",
                  estimated=estimated)
    assert logic.lastReport.estimated_seconds == round(estimated.seconds, 1)
