"""torch through the PyTorch extension, on first use and only with the user's consent.

The engine needs torch, numpy and SimpleITK; Slicer bundles numpy and SimpleITK, so torch
is the only package ever installed.  Nothing is installed at import time.
"""

import re
from typing import Optional, Tuple

import slicer

# The oldest torch the engine supports (pyproject.toml: torch>=2.1).
MINIMUM_TORCH = (2, 1)
NOT_INSTALLED = "PyTorch is not installed."  # the one problem an install can fix


def version_tuple(text: str) -> Tuple[int, ...]:
    """``"2.13.0+cpu"`` -> ``(2, 13, 0)``: the leading release numbers of a version."""
    numbers = re.match(r"\d+(\.\d+)*", text.strip())
    return tuple(int(part) for part in numbers.group(0).split(".")) if numbers else ()


def torch_problem() -> Optional[str]:
    """None when a usable torch is installed, else what is wrong, as one sentence."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return NOT_INSTALLED
    if version_tuple(version) < MINIMUM_TORCH:
        return (f"PyTorch {version} is installed; NSN2NDenoise needs "
                f"{'.'.join(map(str, MINIMUM_TORCH))} or newer. Update it in the PyTorch "
                "Utils module and restart Slicer.")
    try:
        import torch  # noqa: F401
    except Exception as error:  # a broken install: missing DLLs, CUDA libraries, ...
        return f"PyTorch {version} is installed but cannot be loaded: {error}"
    return None


def ensureTorch(askConfirmation: bool = True) -> bool:
    """True when a usable torch is installed, installing it through PyTorchUtils (with
    the user's consent when ``askConfirmation``) if it is missing."""
    problem = torch_problem()
    if problem is None:
        return True
    if problem != NOT_INSTALLED:
        slicer.util.errorDisplay(problem)
        return False
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            "NSN2NDenoise needs PyTorch. Install the 'PyTorch' extension from the Extensions "
            "Manager, restart Slicer, and try again.")
        return False
    requirement = ">=" + ".".join(map(str, MINIMUM_TORCH))
    try:
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=askConfirmation, torchVersionRequirement=requirement)
    except Exception as error:  # network, disk, or pip failures
        slicer.util.errorDisplay("Installing PyTorch failed; denoising needs it.",
                                 detailedText=str(error))
        return False
    if torch is None:
        slicer.util.warningDisplay("PyTorch was not installed, so denoising cannot run.")
        return False
    return torch_problem() is None
