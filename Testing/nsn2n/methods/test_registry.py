import dataclasses

import numpy as np
import pytest

from nsn2n.methods import AUTO_FALLBACK, REGISTRY, method_of_config, resolve_method
from nsn2n.methods.base import RunReport
from nsn2n.options import PRESETS, DenoiseOptions
from nsn2n.volume import Geometry, Volume


def test_auto_picks_the_method_that_claims_the_modality_else_the_fallback():
    assert resolve_method("auto", "US").name == "speckle2self"
    for modality in ("CT", "MR", None, "OT"):
        assert resolve_method("auto", modality).name == AUTO_FALLBACK == "nsn2n"
    assert resolve_method("speckle2self", "CT").name == "speckle2self"  # a name wins


def test_auto_picks_the_series_method_for_a_series_of_volumes():
    for modality in ("MR", "CT", None):
        assert resolve_method("auto", modality, series=True).name == "series"
    assert not REGISTRY["nsn2n"].series and not REGISTRY["speckle2self"].series


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_method_keeps_the_protocol(name):
    method = REGISTRY[name]
    assert method.name == name and tuple(method.presets) == PRESETS
    for preset in PRESETS:
        config = method.config(DenoiseOptions(preset=preset, seed=3))
        assert isinstance(config, method.config_class) and config.seed == 3
        assert method_of_config(config) is method
    with pytest.raises(ValueError, match="preset"):
        method.config(DenoiseOptions(preset="turbo"))
    with pytest.raises(ValueError):
        method.config(DenoiseOptions(steps=0))


def test_a_config_of_no_method_is_refused():
    with pytest.raises(TypeError):
        method_of_config(object())


@pytest.mark.parametrize("name, shape, axis", [("nsn2n", (4, 16, 16), 0),
                                               ("speckle2self", (1, 16, 16), 0),
                                               ("speckle2self", (16, 1, 16), 1)])
def test_the_stack_is_cut_along_the_methods_own_axis(name, shape, axis):
    volume = Volume(np.zeros(shape, np.float32), Geometry.identity((1.0, 1.0, 2.0)))
    stack = REGISTRY[name].stack_shape(volume, DenoiseOptions())
    assert stack == (shape[axis],) + tuple(n for i, n in enumerate(shape) if i != axis)


def test_the_series_method_stacks_every_volumes_slices():
    volume = Volume(np.zeros((6, 4, 16, 12), np.float32), Geometry.identity((1.0, 1.0, 2.0)),
                    dimension=4)
    assert REGISTRY["series"].stack_shape(volume, DenoiseOptions()) == (24, 16, 12)


def test_reports_are_typed_and_serialise():
    report = RunReport("nsn2n", "cpu", 5, 1.0, 2.0, 0, 0.1)
    assert report.to_dict()["steps"] == 5 and report.summary() == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.steps = 6
    noisy = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    _, nsn2n = REGISTRY["nsn2n"].denoise(Volume(noisy, Geometry.identity()),
                                         REGISTRY["nsn2n"].config(DenoiseOptions(steps=2)),
                                         DenoiseOptions(), "MR")
    assert isinstance(nsn2n, RunReport) and "matched" in nsn2n.summary()
    assert nsn2n.slice_axis == 0 and nsn2n.modality == "MR"
    with pytest.raises(ValueError, match="supervised"):
        REGISTRY["speckle2self"].denoise(Volume(noisy, Geometry.identity()),
                                         REGISTRY["speckle2self"].config(DenoiseOptions()),
                                         DenoiseOptions(), "US", reference=noisy)
