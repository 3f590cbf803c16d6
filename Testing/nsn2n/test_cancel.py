"""A cancel stops every stage from inside, not only between stages: each long loop polls
the event (``python -m benchmarks cancel`` measures the latency on 512 px slices).

``SetAfter(n)`` is an event that reads as set from its (n+1)-th poll on.  A stage given a
volume small enough to be one chunk of its outer loop, and an event set after the first
poll, still raises only if it polls inside that chunk."""

import numpy as np
import pytest
import torch

from nsn2n.errors import Cancelled
from nsn2n.methods.nsn2n.pairs import pair_weights
from nsn2n.noise import estimate_noise
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.refine.nonlocal_means import guided_nonlocal_means
from nsn2n.refine.wiener import empirical_wiener
from nsn2n.volume import Geometry, Volume


class SetAfter:
    def __init__(self, polls: int):
        self.polls, self.left = 0, polls

    def is_set(self) -> bool:
        self.polls += 1
        return self.polls > self.left

    def set(self) -> None:
        self.left = 0


@pytest.fixture
def stack():
    rng = np.random.default_rng(0)
    return (np.linspace(0, 1, 6 * 24 * 24).reshape(6, 24, 24)
            + rng.normal(0, 0.05, (6, 24, 24))).astype(np.float32)


STAGES = {
    "noise estimate": lambda s, c: estimate_noise(s, (2.0,), cancel=c),
    "pair mask": lambda s, c: pair_weights(torch.from_numpy(s), 0.03, 3.0, cancel=c),
    "non-local means": lambda s, c: guided_nonlocal_means(s, s, 0.01, 1.0, cancel=c),
    "Wiener stage": lambda s, c: empirical_wiener(s, s, torch.tensor(0.01), stride=2,
                                                  cancel=c),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_stage_polls_inside_its_chunk(stack, stage):
    STAGES[stage](stack, SetAfter(10 ** 6))  # never set: runs to the end
    with pytest.raises(Cancelled):
        STAGES[stage](stack, SetAfter(1))


@pytest.mark.parametrize("phase", ["prepare", "train", "predict", "refine"])
def test_a_cancel_in_any_phase_ends_the_run_before_the_next(noisy_phantom, phase):
    _, noisy = noisy_phantom
    event = SetAfter(10 ** 6)
    seen = []

    def progress(p):
        seen.append(p.phase)
        if p.phase == phase:
            event.set()

    volume = Volume(noisy, Geometry.identity((1.0, 1.0, 3.0)), "MR")
    with pytest.raises(Cancelled):
        denoise(volume, DenoiseOptions(steps=20, device="cpu", method="nsn2n"), progress,
                event)
    later = ["prepare", "train", "predict", "refine"]
    later = later[later.index(phase) + 1:]
    assert not set(seen) & set(later)
