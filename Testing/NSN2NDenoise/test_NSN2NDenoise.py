"""Import NSN2NDenoise.py with stand-ins for the parts of Slicer that need the application
(qt, i18n, parameterNodeWrapper, ScriptedLoadableModule) and check what it declares."""

import re
import sys
import types
import unittest
from pathlib import Path

import pytest

import Testing.NSN2NDenoise.mrml_helpers  # noqa: F401  (skips without slicer-core)


def test_the_module_exposes_the_lib_logic_under_the_same_name(module):
    from NSN2NDenoiseLib.logic import NSN2NDenoiseLogic

    assert module.NSN2NDenoiseLogic is NSN2NDenoiseLogic
    for name in ("NSN2NDenoise", "NSN2NDenoiseWidget", "NSN2NDenoiseTest"):
        assert hasattr(module, name)


def test_module_metadata(module):
    parent = types.SimpleNamespace()
    module.NSN2NDenoise.__init__(types.SimpleNamespace(parent=parent), parent)
    # Translated in the context Slicer's own category names use (module templates).
    assert parent.categories == [("qSlicerAbstractCoreModule", "Filtering")]
    # The help links to the documentation the extension declares as its homepage.
    cmake = (Path(module.__file__).resolve().parents[1] / "CMakeLists.txt").read_text()
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', cmake).group(1)
    assert f'href="{homepage}"' in parent.helpText
    assert "2411.10831" in parent.acknowledgementText
    assert "2507.06828" in parent.acknowledgementText


def test_module_file_stays_thin(module):
    assert len(Path(module.__file__).read_text().splitlines()) < 300


def ui_spin_box_range(name):
    import xml.etree.ElementTree as ET

    tree = ET.parse(Path(__file__).resolve().parents[2] / "NSN2NDenoise" / "Resources" / "UI"
                    / "NSN2NDenoise.ui")
    for widget in tree.iter("widget"):
        bound = widget.find("property[@name='SlicerParameterName']/string")
        if bound is not None and bound.text == name:
            limits = {p.get("name"): int(p.find("number").text)
                      for p in widget.findall("property") if p.find("number") is not None}
            special = widget.find("property[@name='specialValueText']/string")
            return (limits.get("minimum", 0), limits.get("maximum", 99),
                    None if special is None else special.text)
    raise KeyError(name)


def test_integer_parameters_keep_the_limits_of_their_spin_boxes(module):
    # The GUI connector sets +-2**31 on a spin box bound to an int without a range: the
    # seed could go negative (an error) and "from preset" (the minimum) never showed.
    import typing

    hints = typing.get_type_hints(module.NSN2NDenoiseParameterNode, include_extras=True)
    ints = [name for name, hint in hints.items() if typing.get_origin(hint) is typing.Annotated
            and typing.get_args(hint)[0] is int]
    assert set(ints) == {"seed", "steps"}
    for name in ints:
        low, high, special = ui_spin_box_range(name)
        assert ("WithinRange", low, high) in typing.get_args(hints[name])[1:], name
    assert ui_spin_box_range("steps")[0] == 0 and ui_spin_box_range("steps")[2] == "from preset"
    assert ui_spin_box_range("seed")[0] == 0


def test_the_noise_level_keeps_the_limits_of_its_spin_box(module):
    import typing
    import xml.etree.ElementTree as ET

    hint = typing.get_type_hints(module.NSN2NDenoiseParameterNode,
                                 include_extras=True)["noise_sigma"]
    tree = ET.parse(Path(module.__file__).parent / "Resources" / "UI" / "NSN2NDenoise.ui")
    box = next(w for w in tree.iter("widget") if w.get("name") == "noiseSigmaSpinBox")
    maximum = float(box.find("property[@name='maximum']/double").text)
    assert typing.get_args(hint)[0] is float
    assert ("WithinRange", 0.0, maximum) in typing.get_args(hint)[1:]
    assert box.find("property[@name='specialValueText']/string").text == "estimate"


def test_the_input_selector_lists_the_node_types_the_parameter_takes(module):
    import typing
    import xml.etree.ElementTree as ET

    hint = typing.get_type_hints(module.NSN2NDenoiseParameterNode)["inputVolume"]
    declared = {t.__name__ for t in typing.get_args(hint)}
    assert declared == {"vtkMRMLScalarVolumeNode", "vtkMRMLVectorVolumeNode",  # RGB too
                        "vtkMRMLSequenceNode"}
    tree = ET.parse(Path(module.__file__).parent / "Resources" / "UI" / "NSN2NDenoise.ui")
    selector = next(w for w in tree.iter("widget") if w.get("name") == "inputSelector")
    listed = {s.text for s in selector.find("property[@name='nodeTypes']/stringlist")}
    assert listed == declared
