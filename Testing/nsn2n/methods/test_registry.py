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


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_method_keeps_the_protocol(name):
    method = REGISTRY[name]
    assert method.name == name and tuple(method.presets) == PRESETS
    for preset in PRESETS:
        config = method.config(preset, seed=3)
        assert isinstance(config, method.config_class) and config.seed == 3
        assert method_of_config(config) is method
    with pytest.raises(ValueError, match="preset"):
        method.config("turbo")
    with pytest.raises(ValueError):
        method.config("fast", steps=0)


def test_a_config_of_no_method_is_refused():
    with pytest.raises(TypeError):
        method_of_config(object())


@pytest.mark.parametrize("name, shape, axis", [("nsn2n", (4, 16, 16), 0),
                                               ("speckle2self", (1, 16, 16), 0),
                                               ("speckle2self", (16, 1, 16), 1)])
def test_slice_axis_is_the_methods_own(name, shape, axis):
    volume = Volume(np.zeros(shape, np.float32), Geometry.identity((1.0, 1.0, 2.0)))
    assert REGISTRY[name].slice_axis(volume, "auto") == axis


def test_reports_are_typed_and_serialise():
    report = RunReport("nsn2n", "cpu", 5, 1.0, 2.0, 0, 0.1)
    assert report.to_dict()["steps"] == 5 and report.summary() == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.steps = 6
    noisy = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    _, nsn2n = REGISTRY["nsn2n"].denoise(Volume(noisy, Geometry.identity()),
                                         REGISTRY["nsn2n"].config("fast", steps=2),
                                         DenoiseOptions(), "MR")
    assert isinstance(nsn2n, RunReport) and "matched" in nsn2n.summary()
    assert nsn2n.slice_axis == 0 and nsn2n.modality == "MR"
    with pytest.raises(ValueError, match="supervised"):
        REGISTRY["speckle2self"].denoise(Volume(noisy, Geometry.identity()),
                                         REGISTRY["speckle2self"].config("fast"),
                                         DenoiseOptions(), "US", reference=noisy)
