"""Sequence nodes (cine ultrasound, fMRI, DWI) <-> engine volumes.  MRML only: runs in
Slicer and with ``slicer-core``.

A sequence of 3-D volumes becomes a 4-D series ``(t, k, j, i)``, which the engine
denoises as one (the ``series`` method: every frame trains the same network); a sequence
of single-slice frames (a cine) becomes one ``(t, j, i)`` stack, the frames as slices.
The result is a new sequence with the input's index values, in the input's browser when
it has one (frames then play in step with the input), else in a new browser.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np

from nsn2n.errors import InputError
from nsn2n.volume import Geometry, Volume

from .nodes import check_input_node, volume_from_node


def is_sequence(node) -> bool:
    return node is not None and node.IsA("vtkMRMLSequenceNode")


def frames_of(sequence) -> List:
    """The data nodes of ``sequence``, each a volume of one shape, in index order."""
    count = sequence.GetNumberOfDataNodes()
    name = sequence.GetName()
    if count < 2:
        raise InputError(f"sequence '{name}' has {count} frame(s); at least 2 are needed")
    frames = [sequence.GetNthDataNode(n) for n in range(count)]
    for frame in frames:
        if frame is None or not frame.IsA("vtkMRMLScalarVolumeNode"):
            raise InputError(f"sequence '{name}' holds {frame.GetClassName() if frame else 'no'}"
                             " nodes; a sequence of volumes is needed")
        check_input_node(frame)
    shapes = {frame.GetImageData().GetDimensions() for frame in frames}
    if len(shapes) > 1:
        raise InputError(f"the frames of sequence '{name}' differ in size; they must share "
                         "one grid")
    return frames


def volume_from_sequence(sequence) -> Volume:
    """The frames as one engine volume: ``(t, j, i)`` for single-slice frames (a cine),
    else a 4-D series ``(t, k, j, i)``; geometry from the first frame."""
    frames = frames_of(sequence)
    first = volume_from_node(frames[0])
    stacked = np.stack([first.array] + [volume_from_node(f).array for f in frames[1:]])
    if stacked.shape[1] == 1:  # a cine of 2-D (gray or RGB) frames: the frames are slices
        # Frames get the largest spacing, so that "auto" takes them as the slice axis.
        spacing = first.geometry.spacing
        geometry = Geometry((spacing[0], spacing[1], max(spacing[0], spacing[1], 1.0)),
                            first.geometry.origin, first.geometry.direction)
        return Volume(stacked[:, 0], geometry, first.modality)
    if first.components != 1:
        raise InputError(f"sequence '{sequence.GetName()}' holds RGB volumes; a sequence of "
                         "gray volumes or of 2-D frames is needed")
    return Volume(stacked, first.geometry, first.modality, dimension=4)


def write_output_sequence(input_sequence, array: np.ndarray, name: Optional[str] = None):
    """``array`` (the engine's result for :func:`volume_from_sequence`) as a new sequence
    of volumes shaped and placed like the input's frames; returns the new sequence."""
    from .nodes import write_output

    scene = input_sequence.GetScene()
    frames = frames_of(input_sequence)
    output = scene.AddNewNodeByClass(
        "vtkMRMLSequenceNode",
        scene.GenerateUniqueName(name or f"{input_sequence.GetName()} denoised"))
    try:
        output.SetIndexName(input_sequence.GetIndexName())
        output.SetIndexUnit(input_sequence.GetIndexUnit())
        output.SetIndexType(input_sequence.GetIndexType())
        for n, frame in enumerate(frames):
            voxels = array[n][None] if array.ndim == 3 else array[n]
            # A scratch node in the scene gets geometry and window from the input frame
            # (nodes.write_output); the sequence keeps a copy and the scratch node goes.
            scratch = write_output(frame, voxels, name=f"{frame.GetName()} denoised")
            try:
                output.SetDataNodeAtValue(scratch, input_sequence.GetNthIndexValue(n))
            finally:
                scene.RemoveNode(scratch)
        _browse(input_sequence, output)
    except Exception:
        scene.RemoveNode(output)
        raise
    return output


def _browse(input_sequence, output) -> None:
    """Play ``output`` in step with the input (its browser), else in a new browser."""
    import slicer

    scene = input_sequence.GetScene()
    browser = None
    for n in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        candidate = scene.GetNthNodeByClass(n, "vtkMRMLSequenceBrowserNode")
        if candidate.IsSynchronizedSequenceNodeID(input_sequence.GetID(), True):
            browser = candidate
            break
    if browser is not None:
        browser.AddSynchronizedSequenceNode(output)
    else:
        browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode",
                                          scene.GenerateUniqueName(f"{output.GetName()} browser"))
        browser.SetAndObserveMasterSequenceNodeID(output.GetID())
    browser.SetOverwriteProxyName(output, True)
    modules = getattr(slicer, "modules", None)  # the application: show the proxy nodes
    if modules is not None and hasattr(modules, "sequences"):
        modules.sequences.logic().UpdateAllProxyNodes()
