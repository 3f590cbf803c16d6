"""What the panel checks before it starts: is a usable torch installed?"""

import importlib.metadata

import pytest

import Testing.NSN2NDenoise.mrml_helpers  # noqa: F401  (skips without slicer-core)
from NSN2NDenoiseLib.dependencies import MINIMUM_TORCH, torch_problem, version_tuple


def test_version_numbers_are_compared_as_numbers():
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("2.1") >= MINIMUM_TORCH > version_tuple("2.0.1")
    assert version_tuple("2.10.0") > version_tuple("2.9.9")  # not as text
    assert version_tuple("nightly") == ()


def test_the_installed_torch_is_usable():
    assert torch_problem() is None


@pytest.mark.parametrize("installed, expected", [
    (None, "PyTorch is not installed."),
    ("1.13.1", "PyTorch 1.13.1 is installed; NSN2NDenoise needs 2.1 or newer"),
])
def test_a_missing_or_old_torch_is_one_sentence(monkeypatch, installed, expected):
    def version(name):
        if installed is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert torch_problem().startswith(expected)
