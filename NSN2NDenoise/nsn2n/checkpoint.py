"""A trained NS-N2N network on disk: train once on one volume, fine-tune on the others of
the same protocol (``--save-model``, ``--model``).

The file holds the network's weights and what is needed to use and to trust them: the
network's shape, the config it was trained with, the source volume's normalisation and
noise estimate (for the record: every volume is normalised on its own before the network
sees it), and the versions that made it.  It is a dictionary of tensors, numbers and
strings, so it loads with ``torch.load(weights_only=True)``, which executes no code from
the file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, Mapping

import torch

from .errors import InputError
from .volume import write_atomically

FORMAT = 1
KIND = "nsn2n-network"


def save_network(path, model: torch.nn.Module, config: Any,
                 source: Mapping[str, Any]) -> Path:
    """Write ``model`` (a ``nets.UNet2d``), its ``config`` (a dataclass) and facts about
    the volume it was trained on to ``path``, atomically."""
    from . import __version__

    path = Path(path)
    network = {"width": int(config.width), "depth": int(config.depth)}
    checkpoint = {
        "kind": KIND, "format": FORMAT, "network": network,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": {k: v for k, v in dataclasses.asdict(config).items()
                   if isinstance(v, (int, float, str, bool, type(None)))},
        # plain Python values only (numpy scalars would not load with weights_only)
        "source": json.loads(json.dumps(dict(source), default=_plain)),
        "versions": {"nsn2n": __version__, "torch": str(torch.__version__)},
    }
    return write_atomically(path, lambda temporary: torch.save(checkpoint, temporary), ".pt")


def load_network(path, width: int, depth: int) -> Dict[str, torch.Tensor]:
    """The weights saved at ``path`` for a network of ``width`` and ``depth``; an
    InputError (one line) for a file that is missing, not a saved network, or one of
    another shape."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"saved network not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and unpickler errors alike
        raise InputError(f"cannot read the saved network {path.name}: "
                         f"{type(exc).__name__}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("kind") != KIND:
        raise InputError(f"{path.name} is not a network saved by nsn2n --save-model")
    if checkpoint.get("format") != FORMAT:
        raise InputError(f"{path.name} was saved in format {checkpoint.get('format')}; this "
                         f"version reads format {FORMAT}")
    network = checkpoint.get("network", {})
    if (network.get("width"), network.get("depth")) != (width, depth):
        raise InputError(f"{path.name} holds a network of width {network.get('width')} and "
                         f"depth {network.get('depth')}; this run needs {width} and {depth}")
    return checkpoint["state_dict"]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)
