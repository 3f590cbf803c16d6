"""Import NSN2NDenoise.py with stand-ins for the parts of Slicer that need the application
(qt, i18n, parameterNodeWrapper, ScriptedLoadableModule) and check what it declares."""

import re
import sys
import types
import unittest
from pathlib import Path

import pytest

import Testing.NSN2NDenoise.mrml_helpers  # noqa: F401  (skips without slicer-core)


@pytest.fixture
def module(monkeypatch):
    class Base:
        def __init__(self, *args, **kwargs):
            pass

    stubs = {
        "qt": types.SimpleNamespace(QTimer=object),
        "slicer.i18n": types.SimpleNamespace(tr=lambda text: text),
        "slicer.parameterNodeWrapper": types.SimpleNamespace(
            Choice=lambda values: values, parameterNodeWrapper=lambda cls: cls),
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


def test_the_module_exposes_the_lib_logic_under_the_same_name(module):
    from NSN2NDenoiseLib.logic import NSN2NDenoiseLogic

    assert module.NSN2NDenoiseLogic is NSN2NDenoiseLogic
    for name in ("NSN2NDenoise", "NSN2NDenoiseWidget", "NSN2NDenoiseTest"):
        assert hasattr(module, name)


def test_module_metadata(module):
    parent = types.SimpleNamespace()
    module.NSN2NDenoise.__init__(types.SimpleNamespace(parent=parent), parent)
    assert parent.categories == ["Filtering"]
    # The help links to the documentation the extension declares as its homepage.
    cmake = (Path(module.__file__).resolve().parents[1] / "CMakeLists.txt").read_text()
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', cmake).group(1)
    assert f'href="{homepage}"' in parent.helpText
    assert "2411.10831" in parent.acknowledgementText
    assert "2507.06828" in parent.acknowledgementText


def test_module_file_stays_thin(module):
    assert len(Path(module.__file__).read_text().splitlines()) < 300
