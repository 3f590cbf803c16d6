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


def poll_until_done(logic, timeout=180):
    deadline = time.monotonic() + timeout
    while logic.poll():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_background_run_adds_the_node_only_at_the_end(scene, ct_node):
    logic = NSN2NDenoiseLogic()
    count = len(volume_nodes(scene))
    progress = []
    outcome = run_async(logic, ct_node, progressCallback=progress.append, **FAST)
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


def test_a_failure_while_writing_the_result_reaches_the_error_handler(scene, ct_node,
                                                                      monkeypatch):
    import NSN2NDenoiseLib.logic

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(NSN2NDenoiseLib.logic, "write_output", fail)
    logic = NSN2NDenoiseLogic()
    outcome = run_async(logic, ct_node, **FAST)
    poll_until_done(logic)  # ends: the panel is not left running
    assert isinstance(outcome.get("error"), OSError) and "node" not in outcome
    assert not logic.busy and logic.lastReport is None


def test_the_background_run_is_a_separate_process_with_its_own_estimate(scene, ct_node):
    import os

    logic = NSN2NDenoiseLogic()
    phases = []
    run_async(logic, ct_node, progressCallback=lambda p: phases.append(p.phase), **FAST)
    assert logic.job._process.pid != os.getpid()
    poll_until_done(logic)
    assert phases[0] == "estimate" and "train" in phases
    assert logic.lastReport.estimated_seconds > 0 and logic.lastReport.steps == FAST["steps"]


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
                                       steps=0, bias_correction="off", noise_sigma=0.0)
    assert panel_options(parameters, None) == DenoiseOptions(
        method="auto", preset="fast", seed=7, slice_axis=2, steps=None, bias_correction=False)
    parameters.steps, parameters.bias_correction, parameters.noise_sigma = 300, "on", 8.4
    options = panel_options(parameters, "cuda:0")
    assert options.steps == 300 and options.bias_correction is True
    assert options.noise_sigma == 8.4
    assert options.device == "cuda:0"
    assert set(PANEL_OPTIONS) <= {f.name for f in dataclasses.fields(DenoiseOptions)}


def test_what_the_slicer_self_test_checks_holds_on_its_sample(scene):
    # NSN2NDenoiseTest runs only inside Slicer; this repeats its check on slicer-core.
    from pathlib import Path

    import SimpleITK as sitk
    from nsn2n.noise import estimate_noise

    path = (Path(__file__).resolve().parents[3] / "NSN2NDenoise" / "Resources" / "Samples"
            / "mni152_t1_rician5_small.nrrd")
    image = sitk.ReadImage(str(path))
    node = add_volume(scene, sitk.GetArrayFromImage(image), name="sample")
    node.SetSpacing(*image.GetSpacing())  # as slicer.util.loadVolume gives it: 1 mm
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


def add_sequence(scene, arrays, name, node_class="vtkMRMLScalarVolumeNode", browse=True):
    from Testing.NSN2NDenoise.mrml_helpers import ijk_to_ras

    scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())  # the application does
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    for t, array in enumerate(arrays):
        frame = getattr(slicer, node_class)()
        frame.SetIJKToRASMatrix(ijk_to_ras())
        slicer.util.updateVolumeFromArray(frame, array)
        sequence.SetDataNodeAtValue(frame, f"{0.5 * t:g}")
    if browse:
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    return sequence


def frame_arrays(sequence):
    return [slicer.util.arrayFromVolume(sequence.GetNthDataNode(n))
            for n in range(sequence.GetNumberOfDataNodes())]


def test_a_sequence_of_volumes_becomes_a_new_sequence_in_the_same_browser(scene, phantom):
    rng = np.random.default_rng(0)
    arrays = [(1000 * phantom + rng.normal(0, 40, phantom.shape)).astype(np.int16)
              for _ in range(3)]
    sequence = add_sequence(scene, arrays, "fMRI")
    logic = NSN2NDenoiseLogic()
    out = logic.process(sequence, **FAST)
    assert out.IsA("vtkMRMLSequenceNode") and out.GetName() == "fMRI denoised"
    assert logic.lastReport.method == "series"  # 4-D: the frames train one network
    assert out.GetNumberOfDataNodes() == 3 and out.GetIndexName() == "time"
    assert [out.GetNthIndexValue(n) for n in range(3)] == ["0", "0.5", "1"]
    for before, after, n in zip(arrays, frame_arrays(out), range(3)):
        assert after.shape == before.shape and after.dtype == before.dtype
        assert not np.array_equal(after, before)
        np.testing.assert_allclose(matrix_of(out.GetNthDataNode(n)), matrix_of(
            sequence.GetNthDataNode(n)))
    browser = scene.GetFirstNodeByClass("vtkMRMLSequenceBrowserNode")
    assert browser.IsSynchronizedSequenceNodeID(out.GetID(), True)  # plays with the input
    assert len(volume_nodes(scene)) == 0  # no scratch node left behind


def test_a_time_course_with_nsn2n_chosen_is_denoised_volume_by_volume(scene, phantom):
    rng = np.random.default_rng(2)
    arrays = [(1000 * phantom + rng.normal(0, 40, phantom.shape)).astype(np.int16)
              for _ in range(2)]
    sequence = add_sequence(scene, arrays, "BOLD")
    logic = NSN2NDenoiseLogic()
    out = logic.process(sequence, method="nsn2n", **FAST)
    assert logic.lastReport.method == "nsn2n" and out.GetNumberOfDataNodes() == 2
    assert logic.lastReport.steps == 2 * FAST["steps"]  # one network per volume
    for before, after in zip(arrays, frame_arrays(out)):
        assert after.shape == before.shape and not np.array_equal(after, before)


def test_a_cine_of_2d_frames_is_one_stack_and_gets_its_own_browser(scene):
    rng = np.random.default_rng(1)
    arrays = [rng.gamma(2.0, 40.0, (1, 24, 40)).astype(np.uint8) for _ in range(5)]
    sequence = add_sequence(scene, arrays, "US cine", browse=False)
    logic = NSN2NDenoiseLogic()
    out = logic.process(sequence, method="speckle2self", steps=2, seed=0, device="cpu")
    assert logic.lastReport.method == "speckle2self" and logic.lastReport.slice_axis == 0
    assert [a.shape for a in frame_arrays(out)] == [(1, 24, 40)] * 5
    browser = scene.GetFirstNodeByClass("vtkMRMLSequenceBrowserNode")
    assert browser.GetMasterSequenceNode() is out


def test_sequences_refuse_an_output_volume_and_odd_frames(scene, ct_node):
    ok = add_sequence(scene, [np.arange(60, dtype=np.int16).reshape(3, 4, 5)] * 2, "two")
    with pytest.raises(InputError, match="new sequence"):
        NSN2NDenoiseLogic().process(ok, ct_node, **FAST)
    one = add_sequence(scene, [np.zeros((3, 4, 5), np.int16)], "one")
    with pytest.raises(InputError, match="at least 2"):
        NSN2NDenoiseLogic().process(one, **FAST)
    mixed = add_sequence(scene, [np.ones((3, 4, 5), np.int16), np.ones((3, 4, 6), np.int16)],
                         "mixed")
    with pytest.raises(InputError, match="differ in size"):
        NSN2NDenoiseLogic().process(mixed, **FAST)


def test_a_sequence_runs_in_the_background_process_too(scene, phantom):
    arrays = [(1000 * phantom + np.random.default_rng(t).normal(0, 40, phantom.shape))
              .astype(np.int16) for t in range(3)]
    sequence = add_sequence(scene, arrays, "DWI")
    logic = NSN2NDenoiseLogic()
    outcome = run_async(logic, sequence, **FAST)
    poll_until_done(logic)
    out = outcome["node"]
    assert out.IsA("vtkMRMLSequenceNode") and out.GetNumberOfDataNodes() == 3
    assert logic.lastReport.method == "series"


def test_device_choices_survive_a_torch_that_fails_to_load(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "torch":
            raise OSError("libtorch_cpu.so: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    assert NSN2NDenoiseLogic.deviceChoices() == [("auto", "Automatic"), ("cpu", "CPU")]


def test_the_panel_and_a_batch_on_the_same_input_at_once(scene, tmp_path):
    """The panel's run works on its own copy of the voxels; a batch reads the file; the
    input is never written by either, and both results are whole."""
    import hashlib
    import subprocess
    import sys

    from nsn2n.volume import read_volume
    from Testing.helpers import write_ct

    source = write_ct(tmp_path / "in" / "ct.nrrd", 0)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    node = add_volume(scene, read_volume(source).array)
    logic = NSN2NDenoiseLogic()
    outcome = run_async(logic, node, **FAST)
    batch = subprocess.Popen([sys.executable, "-m", "nsn2n", "batch", str(source.parent),
                              str(tmp_path / "out"), "--steps", "6", "--device", "cpu",
                              "--workers", "1", "--progress", "none"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poll_until_done(logic)
    _, stderr = batch.communicate(timeout=300)
    assert batch.returncode == 0, stderr
    assert "node" in outcome, outcome
    result = slicer.util.arrayFromVolume(outcome["node"])
    assert result.shape == read_volume(source).array.shape and np.isfinite(result).all()
    assert read_volume(tmp_path / "out" / "ct.nrrd").array.shape == result.shape
    assert hashlib.sha256(source.read_bytes()).hexdigest() == digest
