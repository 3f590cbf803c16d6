"""``python -m benchmarks pretrain-speckle2self FILE``: the shipped Speckle2Self weights,
remade.

The authors train Speckle2Self self-supervised over a dataset (5000 epochs;
docs/speckle2self.md, "Pretraining"); a few hundred steps on one cine cannot stand in for
that.  This trains the product's network with the product's loss on a pool
of random simulated frames (``speckle.random_frame``: random anatomy, PSF, dynamic range
and gain, never the benchmark's phantom) and writes the weights that ``fit_predict``
fine-tunes.  The clean images are never computed: the loss sees only noisy frames, as
in the authors' simulator training.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np
import torch

from nsn2n.methods.speckle2self.config import Speckle2SelfConfig
from nsn2n.methods.speckle2self.method import (architecture, branch_loss, consistency_ramp,
                                               crop_batch, new_model)
from nsn2n.methods.speckle2self.msp import SCALES, perturb
from nsn2n.methods.speckle2self.pretrained import save_weights
from nsn2n.runtime import (CancelEvent, ProgressCallback, autocast_dtype, check_cancel,
                           resolve_device)
from nsn2n.training import Schedule, TrainResult, train
from Testing.simulators import speckle


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    steps: int = 3000
    pool: int = 768  # random 256x256 frames; crops and augmentation multiply them
    frame_size: int = 256
    consistency_weight: float = 0.3
    consistency_warmup: float = 0.15
    learning_rate: float = 2e-3
    average_tail: float = 0.1
    seed: int = 1234
    # The architecture and crops of the product (Speckle2SelfConfig's defaults).
    network: Speckle2SelfConfig = Speckle2SelfConfig(pretrained=False)

    def __post_init__(self):
        if self.steps < 1 or self.pool < 1:
            raise ValueError("steps and pool must be >= 1")
        if self.frame_size < self.network.patch:
            raise ValueError("frame_size must be at least the crop size")
        if self.network.pretrained:
            raise ValueError("pretraining starts from a random network: pretrained=False")


def frame_pool(config: PretrainConfig, rng: np.random.Generator,
               cancel: Optional[CancelEvent] = None) -> torch.Tensor:
    """``(pool, scales, H, W)`` perturbed copies of random frames, in fp16 (half the memory;
    crops go back to fp32)."""
    copies = []
    for _ in range(config.pool):
        check_cancel(cancel)
        frame = torch.from_numpy(speckle.random_frame(rng, config.frame_size))[None, None]
        copies.append(perturb(frame, SCALES).half())
    return torch.cat(copies)


def pretrain(config: PretrainConfig = PretrainConfig(), device: str = "auto",
             progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelEvent] = None) -> TrainResult:
    net = config.network
    rng = np.random.default_rng(config.seed)
    copies = frame_pool(config, rng, cancel)
    torch_device = resolve_device(device)
    model = new_model(dataclasses.replace(net, seed=config.seed)).to(torch_device)
    dtype = autocast_dtype(torch_device)

    def batch_loss(step: int, spent: float) -> torch.Tensor:
        weight = config.consistency_weight * consistency_ramp(spent, config.consistency_warmup)
        inputs = crop_batch(copies, rng, net.batch, net.patch, torch_device)
        return branch_loss(model, inputs, weight, dtype)

    return train(model, batch_loss, Schedule(config.steps, None, config.learning_rate),
                 average_tail=config.average_tail, betas=(net.beta1, 0.999),
                 progress=progress, cancel=cancel)


def run(args) -> int:
    path, steps, seed = args.file, args.steps, args.seed
    config = PretrainConfig(steps=steps, seed=seed)
    started = time.perf_counter()

    def log(p) -> None:
        if p.step % 100 == 0 or p.step == p.total:
            print(f"{p.phase} {p.step}/{p.total} loss {p.loss:.5f} "
                  f"{p.elapsed:.0f} s, ~{p.remaining:.0f} s left", flush=True)

    result = pretrain(config, progress=log)
    provenance = dict(command=f"python -m benchmarks pretrain-speckle2self FILE --steps "
                      f"{steps} --seed {seed}", steps=result.steps, seed=seed,
                      pool=config.pool, consistency_weight=config.consistency_weight,
                      torch=str(torch.__version__), recoveries=result.recoveries,
                      seconds=round(time.perf_counter() - started))
    save_weights(result.averaged, path, architecture(config.network), provenance)
    print(f"wrote {path}: {provenance}")
    return 0
