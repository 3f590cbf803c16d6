"""torch through the PyTorch extension, on first use and only with the user's consent.

The engine needs torch, numpy and SimpleITK; Slicer bundles numpy and SimpleITK, so torch
is the only package ever installed.  Nothing is installed at import time.
"""

import slicer


def ensureTorch() -> bool:
    """True when torch can be imported, installing it through PyTorchUtils if the user agrees."""
    try:
        import torch  # noqa: F401

        return True
    except ImportError:
        pass
    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(
            "NSN2NDenoise needs PyTorch. Install the 'PyTorch' extension from the Extensions "
            "Manager, restart Slicer, and try again.")
        return False
    try:
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=True, torchVersionRequirement=">=2.1")
    except Exception as error:  # network, disk, or pip failures
        slicer.util.errorDisplay("Installing PyTorch failed; denoising needs it.",
                                 detailedText=str(error))
        return False
    if torch is None:
        slicer.util.warningDisplay("PyTorch was not installed, so denoising cannot run.")
        return False
    return True
