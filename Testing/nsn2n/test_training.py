import math
import threading
import time

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from nsn2n.errors import Cancelled, InputError
from nsn2n.training import Schedule, grad_scaler, train


def test_schedule_warms_up_decays_and_obeys_time():
    s = Schedule(steps=100, max_seconds=10.0, peak_lr=1.0)
    assert s.lr(0.0) < s.lr(0.05) == pytest.approx(1.0)
    assert s.lr(1.0) == pytest.approx(0.02)
    assert s.fraction(10, 9.0) == pytest.approx(0.9)  # time runs out first
    assert s.fraction(200, 0.0) == 1.0


def fit_line(steps=50, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 32)[:, None]

    def batch_loss(step, spent):
        return ((model(x) - 3 * x) ** 2).mean()

    return train(model, batch_loss, Schedule(steps, None, 0.1), **kwargs)


def test_training_reduces_loss_and_reports_progress():
    seen = []
    result = fit_line(progress=seen.append)
    assert result.steps == 50 and len(seen) == 50
    assert seen[-1].loss < seen[0].loss
    assert seen[-1].step == 50 and seen[-1].remaining == pytest.approx(0, abs=1e-6)


def test_batch_loss_sees_the_budget_fraction_the_learning_rate_follows():
    model = torch.nn.Linear(1, 1)
    seen = []

    def batch_loss(step, spent):
        seen.append((step, spent))
        return model(torch.ones(1, 1)).sum()

    train(model, batch_loss, Schedule(8, None, 0.01))
    assert seen == [(k, k / 8) for k in range(8)]
    seen.clear()
    train(model, batch_loss, Schedule(10 ** 6, 0.2, 0.01))  # a time budget
    fractions = [spent for _, spent in seen]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1


def test_cancel_raises_within_one_iteration():
    cancel = threading.Event()
    calls = []

    def progress(p):
        calls.append(p.step)
        if p.step == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        fit_line(progress=progress, cancel=cancel)
    assert calls[-1] == 3


def test_non_finite_loss_is_recovered_not_returned():
    model = torch.nn.Linear(1, 1)
    x = torch.ones(4, 1)

    def batch_loss(step, spent):
        loss = ((model(x) - 1) ** 2).mean()
        return loss * float("nan") if step == 5 else loss

    result = train(model, batch_loss, Schedule(20, None, 0.01))
    assert result.recoveries == 1
    assert all(torch.isfinite(p).all() for p in result.averaged.parameters())


def test_averaged_weights_are_the_mean_of_the_tail_iterates():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1, bias=False)
    seen = {}

    def batch_loss(step, spent):
        return (model.weight * 1.0).sum()  # constant gradient: the weight keeps moving

    def record(p):
        seen[p.step] = model.weight.item()

    result = train(model, batch_loss, Schedule(20, None, 0.1), average_tail=0.25,
                   progress=record)
    tail = [seen[s] for s in range(15, 21)]  # steps whose budget fraction is >= 0.75
    assert float(result.averaged.weight) == pytest.approx(sum(tail) / len(tail), rel=1e-5)
    assert result.model.weight.item() == pytest.approx(seen[20])
    other = torch.nn.Linear(1, 1)
    no_tail = train(other, lambda step, spent: other(torch.ones(1, 1)).sum(),
                    Schedule(3, None, 0.1),
                    average_tail=0)
    assert torch.equal(no_tail.averaged.weight, no_tail.model.weight)


def test_a_finite_loss_explosion_is_rolled_back():
    model = torch.nn.Linear(1, 1)
    x = torch.ones(4, 1)

    def batch_loss(step, spent):
        loss = ((model(x) - 1) ** 2).mean() + 0.01
        return loss * 1e4 if step == 30 else loss  # finite, but 10^4 times the usual

    result = train(model, batch_loss, Schedule(60, None, 0.01))
    assert result.recoveries == 1
    assert all(torch.isfinite(p).all() for p in result.averaged.parameters())


def test_heterogeneous_batches_are_not_mistaken_for_explosions():
    model = torch.nn.Linear(1, 1)
    x = torch.ones(4, 1)

    def batch_loss(step, spent):  # most batches nearly empty (air), every 7th a normal one
        base = ((model(x) - 1) ** 2).mean()
        return base + (0.05 if step % 7 == 0 else 1e-5)

    assert train(model, batch_loss, Schedule(200, None, 0.001)).recoveries == 0


def test_endless_divergence_stops_early_instead_of_failing():
    model = torch.nn.Linear(1, 1)
    x = torch.ones(4, 1)

    def batch_loss(step, spent):
        loss = ((model(x) - 1) ** 2).mean()
        return loss * float("nan") if step >= 30 else loss

    result = train(model, batch_loss, Schedule(100, None, 0.01), max_recoveries=3)
    assert result.recoveries == 4 and result.steps < 100
    assert all(torch.isfinite(p).all() for p in result.averaged.parameters())


def test_an_update_that_breaks_the_weights_right_before_a_snapshot_is_not_kept():
    # The loss is computed before the update, so the 50th update can break the weights
    # while its batch still scored healthy; the snapshot taken after it must not be trusted.
    model = torch.nn.Linear(1, 1, bias=False)
    x = torch.linspace(-1, 1, 16)[:, None]
    updates = []

    def break_after_the_50th_update(optimizer, args, kwargs):
        updates.append(1)
        if len(updates) == 50:
            with torch.no_grad():
                model.weight.fill_(1e4)

    def batch_loss(step, spent):
        return ((model(x) - 2 * x) ** 2).mean() + 1.0

    hook = register_optimizer_step_post_hook(break_after_the_50th_update)
    try:
        result = train(model, batch_loss, Schedule(150, None, 0.05), max_recoveries=3)
    finally:
        hook.remove()
    assert result.recoveries >= 1 and result.steps == 150  # recovered, did not give up
    assert abs(float(result.averaged.weight)) < 10 and result.last_loss < 2  # broken: 1e4, 1e8


def test_grad_scaler_only_for_float16():
    cpu = torch.device("cpu")
    assert grad_scaler(cpu, None) is None and grad_scaler(cpu, torch.bfloat16) is None
    assert isinstance(grad_scaler(cpu, torch.float16), torch.amp.GradScaler)


def test_loss_scaling_trains_in_float16_as_a_gpu_without_bf16_would():
    # The CUDA fp16 path's logic (scale, unscale before clipping, skip overflowing steps)
    # on the CPU, where autocast also runs float16.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Linear(8, 1))
    x = torch.linspace(-1, 1, 32)[:, None]
    scaler = grad_scaler(torch.device("cpu"), torch.float16)

    def batch_loss(step, spent):
        with torch.autocast("cpu", dtype=torch.float16):
            return ((model(x).float() - 3 * x) ** 2).mean()

    first = float(batch_loss(0, 0.0).detach())
    result = train(model, batch_loss, Schedule(60, None, 0.05), scaler=scaler)
    assert result.last_loss < 0.1 * first and result.recoveries == 0
    assert scaler.get_scale() > 1.0  # the loss was scaled
