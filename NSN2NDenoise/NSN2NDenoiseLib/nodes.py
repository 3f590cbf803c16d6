"""Volume nodes <-> engine volumes.  MRML only: runs in Slicer and with ``slicer-core``.

The input node is only read (its voxels are copied on the main thread before any work
starts).  The output is written in one go at the end, so a cancelled or failed run leaves
the scene exactly as it was.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from nsn2n.errors import InputError
from nsn2n.volume import Geometry, Volume


def check_input_node(node) -> None:
    """One clear sentence for every volume node the engine cannot denoise."""
    if node is None:
        raise InputError("No input volume is selected.")
    name = node.GetName()
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InputError(f"'{name}' is a label map; denoising needs an intensity volume.")
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(f"'{name}' is not a scalar volume.")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"'{name}' has no image data.")
    components = image.GetNumberOfScalarComponents()
    if components not in (1, 3, 4):
        raise InputError(f"'{name}' has {components} components per voxel (a vector "
                         "volume); a gray or RGB volume is needed.")
    # Slice count and colour are the method's business: NS-N2N refuses 2-D images and RGB,
    # Speckle2Self takes both; the engine says so in one sentence.


def node_modality(node) -> Optional[str]:
    """The DICOM modality of a node loaded through Slicer's DICOM module, else None."""
    import slicer

    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return None
    try:
        return database.instanceValue(uids[0], "0008,0060").strip() or None
    except Exception:  # a database without that instance: modality stays unknown
        return None


def volume_from_node(node) -> Volume:
    """Copy the voxels (``(k, j, i)`` or ``(k, j, i, c)`` order) and the geometry of a
    scalar or RGB volume node."""
    import slicer.util

    check_input_node(node)
    import vtk

    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(matrix)
    # RAS here, where files use LPS: the engine reads only the spacing (slice-axis choice),
    # and the output takes its geometry from the input node itself.
    geometry = Geometry(tuple(node.GetSpacing()), tuple(node.GetOrigin()),
                        tuple(matrix.GetElement(r, c) for r in range(3) for c in range(3)))
    return Volume(array, geometry, node_modality(node))


def write_output(input_node, array: np.ndarray, output_node=None, name: Optional[str] = None):
    """Write ``array`` as the denoised version of ``input_node`` and return the output node.

    A new node is created in the input's scene only now, named after the input; an existing
    output node is reused.  Geometry (IJK-to-RAS), parent transform, subject-hierarchy parent
    and window/level all follow the input, so before and after compare honestly.
    """
    import slicer
    import slicer.util

    if output_node is not None and output_node.GetID() == input_node.GetID():
        raise InputError("The output volume must differ from the input volume.")
    scene = input_node.GetScene()
    created = output_node is None
    if created:
        output_node = scene.AddNewNodeByClass(
            "vtkMRMLScalarVolumeNode",
            scene.GenerateUniqueName(name or f"{input_node.GetName()} denoised"))
    try:
        output_node.CopyOrientation(input_node)
        slicer.util.updateVolumeFromArray(output_node, array)
        output_node.SetAndObserveTransformNodeID(input_node.GetTransformNodeID())
        _match_display(input_node, output_node)
        _place_next_to(input_node, output_node)
    except Exception:
        if created:
            scene.RemoveNode(output_node)
        raise
    return output_node


def _match_display(input_node, output_node) -> None:
    source = input_node.GetDisplayNode()
    if output_node.GetDisplayNode() is None:
        output_node.CreateDefaultDisplayNodes()
    target = output_node.GetDisplayNode()
    if source is None or target is None:
        return
    if input_node.IsA("vtkMRMLVectorVolumeNode"):  # RGB in, gray out: its own window
        target.SetAutoWindowLevel(True)
        return
    if source.GetColorNodeID():
        target.SetAndObserveColorNodeID(source.GetColorNodeID())
    target.SetAutoWindowLevel(False)
    target.SetWindowLevel(source.GetWindow(), source.GetLevel())


def _place_next_to(input_node, output_node) -> None:
    import slicer

    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(
        input_node.GetScene())
    if hierarchy is None:
        return
    parent = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(input_node))
    hierarchy.SetItemParent(hierarchy.GetItemByDataNode(output_node), parent)
