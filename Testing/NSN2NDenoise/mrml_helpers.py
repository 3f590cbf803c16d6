"""MRML helpers for the module tests (real scene from the slicer-core wheel)."""

import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the slicer module here is not slicer-core", allow_module_level=True)


def ijk_to_ras():
    """An oblique, anisotropic IJK-to-RAS matrix (a permutation with flips and scaling)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    rows = [[0.0, 0.8, 0.0, -20.0], [0.0, 0.0, -2.5, 40.0], [0.7, 0.0, 0.0, 5.0]]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            matrix.SetElement(r, c, value)
    return matrix


def add_volume(scene, array, name="CT head", node_class="vtkMRMLScalarVolumeNode"):
    import slicer.util

    node = scene.AddNewNodeByClass(node_class, name)
    node.SetIJKToRASMatrix(ijk_to_ras())
    slicer.util.updateVolumeFromArray(node, array)
    node.CreateDefaultDisplayNodes()
    return node
