"""Network weights shipped with the package: where they are, how they are saved and loaded.

Speckle2Self's authors train over a dataset, not per image (docs/speckle2self.md, "The
published method"); the package ships weights trained that way, self-supervised, on
simulated speckle (``python -m benchmarks pretrain-speckle2self`` makes them;
docs/speckle2self.md, "Pretraining"), and a run fine-tunes them on the user's frames.
Nothing is downloaded: the file is package data, found next to this module in a pip
install and in the Slicer module.

Stored in half precision (the file is half the size; the weights are used in bf16 or
fp32, whose rounding is coarser or equal), with the architecture and how they were made,
so that a mismatched network fails with one clear line instead of a shape error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import torch

from ...errors import InputError
from ...volume import write_atomically

SPECKLE2SELF_FILE = "speckle2self_simulated.pt"


def weights_path(name: str = SPECKLE2SELF_FILE) -> Path:
    return Path(__file__).resolve().parent / "weights" / name


def save_weights(model: torch.nn.Module, path, architecture: Dict, provenance: Dict) -> Path:
    """Write ``model``'s weights (fp16) with its architecture and provenance, atomically."""
    path = Path(path)
    state = {key: value.detach().to("cpu", torch.float16 if value.is_floating_point()
                                    else value.dtype).clone()
             for key, value in model.state_dict().items()}
    return write_atomically(path, lambda temporary: torch.save(
        dict(state=state, architecture=dict(architecture), provenance=dict(provenance)),
        temporary), ".pt")


def load_weights(path=None) -> Tuple[Dict[str, torch.Tensor], Dict, Dict]:
    """``(state_dict in fp32, architecture, provenance)`` of a file written by
    :func:`save_weights` (default: the shipped Speckle2Self weights)."""
    path = Path(path) if path is not None else weights_path()
    if not path.is_file():
        raise InputError(f"pretrained weights not found: {path} (reinstall the package, or "
                         "train from scratch with pretrained=False)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    state = {key: value.float() if value.is_floating_point() else value
             for key, value in saved["state"].items()}
    return state, saved["architecture"], saved["provenance"]
