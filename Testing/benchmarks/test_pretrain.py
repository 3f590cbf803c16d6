import dataclasses
import threading

import numpy as np
import pytest
import torch

from benchmarks import pretrain as module
from benchmarks.__main__ import main
from benchmarks.pretrain import PretrainConfig, frame_pool, pretrain
from nsn2n.errors import Cancelled
from nsn2n.methods.speckle2self.config import Speckle2SelfConfig
from nsn2n.methods.speckle2self.method import new_model
from nsn2n.methods.speckle2self.pretrained import load_weights

TINY = PretrainConfig(steps=3, pool=2, frame_size=32, network=Speckle2SelfConfig(
    pretrained=False, width=4, levels=2, patch=16, batch=2))


def test_the_pool_holds_one_normalised_copy_per_scale_of_each_frame():
    pool = frame_pool(TINY, np.random.default_rng(0))
    assert pool.shape == (2, 3, 32, 32) and pool.dtype == torch.float16
    assert float(pool.amin()) == 0.0 and float(pool.amax()) == 1.0


def test_pretraining_is_seeded_and_changes_the_weights():
    a, b = pretrain(TINY, device="cpu"), pretrain(TINY, device="cpu")
    assert a.steps == 3
    for (key, x), y in zip(a.averaged.state_dict().items(), b.averaged.state_dict().values()):
        assert torch.equal(x, y), key
    start = new_model(dataclasses.replace(TINY.network, seed=TINY.seed))
    last = "decoder.3.0.weight"
    assert not torch.equal(a.averaged.state_dict()[last], start.state_dict()[last])
    other = pretrain(dataclasses.replace(TINY, seed=5), device="cpu")
    assert not torch.equal(other.averaged.state_dict()[last], a.averaged.state_dict()[last])


def test_pretraining_cancels():
    event = threading.Event()
    event.set()
    with pytest.raises(Cancelled):
        pretrain(TINY, device="cpu", cancel=event)


def test_bad_pretraining_settings_are_refused():
    with pytest.raises(ValueError):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError):
        PretrainConfig(frame_size=64)  # smaller than the product's 128 px crops


def test_the_command_writes_weights_the_method_can_load(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(module, "PretrainConfig",
                        lambda steps, seed: PretrainConfig(**{**TINY.__dict__, "steps": steps,
                                                              "seed": seed}))
    assert main(["pretrain-speckle2self", str(tmp_path / "w.pt"), "--steps", "2",
                 "--seed", "9"]) == 0
    state, architecture, provenance = load_weights(tmp_path / "w.pt")
    assert architecture == dict(width=4, levels=2, output_norm="none")
    assert provenance["steps"] == 2 and provenance["seed"] == 9
