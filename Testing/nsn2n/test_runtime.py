import math
import time

import pytest
import torch

from nsn2n.errors import InputError
from nsn2n.runtime import report_pace, resolve_device


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(InputError):
        resolve_device("toaster")


def test_report_pace_extrapolates_the_time_left_from_the_pace_so_far():
    seen = []
    started = time.perf_counter() - 2.0  # two seconds ago
    report_pace(seen.append, "refine", 0, 4, started)
    report_pace(seen.append, "refine", 1, 4, started)
    report_pace(seen.append, "refine", 4, 4, started)
    report_pace(None, "refine", 1, 4, started)  # no callback: nothing to do
    assert math.isnan(seen[0].remaining) and math.isnan(seen[0].loss)
    assert seen[1].remaining == pytest.approx(3 * seen[1].elapsed) and seen[1].elapsed >= 2.0
    assert seen[2].remaining == 0.0 and [p.step for p in seen] == [0, 1, 4]
