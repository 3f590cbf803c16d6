"""Before/after in the slice viewers (needs the Slicer application)."""

import slicer


def showBeforeAfter(inputNode, outputNode, opacity: float = 0.5) -> None:
    """Output as background, input as foreground at ``opacity``, all views linked.

    Fading the foreground with the panel's opacity slider then compares the same voxels;
    both nodes already share window/level (see ``nodes.write_output``).
    """
    if inputNode is None or outputNode is None:
        return
    slicer.util.setSliceViewerLayers(background=outputNode, foreground=inputNode,
                                     foregroundOpacity=opacity, fit=True)
    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:
        return
    for name in layoutManager.sliceViewNames():
        layoutManager.sliceWidget(name).mrmlSliceCompositeNode().SetLinkedControl(True)


def setForegroundOpacity(value):
    """Fade every slice view between the output (background) and the input."""
    layout = slicer.app.layoutManager()
    for name in layout.sliceViewNames():
        layout.sliceWidget(name).mrmlSliceCompositeNode().SetForegroundOpacity(value)
