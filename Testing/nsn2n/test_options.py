import subprocess
import sys

import pytest

from nsn2n.errors import InputError
from nsn2n.options import METHODS, PRESETS, DenoiseOptions


def test_the_words_of_a_panel_or_a_command_line_become_typed_values():
    options = DenoiseOptions(slice_axis="2", bias_correction="off")
    assert options.slice_axis == 2 and options.bias_correction is False
    assert DenoiseOptions(bias_correction="on").bias_correction is True
    assert DenoiseOptions(bias_correction="auto").bias_correction is None
    assert DenoiseOptions(slice_axis=1) == DenoiseOptions(slice_axis="1")
    assert DenoiseOptions(max_minutes=1.5).max_seconds == 90.0


def test_one_list_of_methods_and_presets_matches_the_registry():
    from nsn2n.methods import REGISTRY

    assert set(METHODS) == {"auto"} | set(REGISTRY)
    for method in REGISTRY.values():
        assert tuple(method.presets) == PRESETS


def test_importing_the_options_does_not_import_torch():
    # The Slicer module reads the choices before torch is installed.
    code = "import sys, nsn2n.options; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("options, message", [
    (dict(method="magic"), "unknown method"),
    (dict(slice_axis=3), "slice axis"),
    (dict(preset="turbo"), "preset"),
    (dict(steps=0), "steps"),
    (dict(steps=2.5), "steps"),
    (dict(max_minutes=-1), "max minutes"),
    (dict(seed=-1), "seed"),
    (dict(device="toaster"), "device"),
    (dict(modality="PET"), "modality"),
    (dict(bias_correction="maybe"), "bias correction"),
    (dict(noise_sigma=0), "noise sigma"),
    (dict(noise_sigma=-2.0), "noise sigma"),
    (dict(noise_sigma=float("inf")), "noise sigma"),
    (dict(noise_sigma=float("nan")), "noise sigma"),
    (dict(noise_sigma="8"), "noise sigma"),
    (dict(noise_sigma=True), "noise sigma"),
])
def test_bad_options_are_input_errors(options, message):
    with pytest.raises(InputError, match=message):
        DenoiseOptions(**options)
