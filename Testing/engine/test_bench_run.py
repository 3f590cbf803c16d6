import numpy as np

from nsn2n.bench import run
from nsn2n.bench.data import BenchCase
from nsn2n.volume import Geometry


def test_loss_term_rows_pair_the_shipped_losses_with_the_plain_recon_loss_per_seed(monkeypatch):
    rng = np.random.default_rng(0)
    clean = rng.random((8, 16, 16))
    case = BenchCase("tiny", clean + 0.1, clean, clean > 0.5, Geometry.identity((1, 1, 1)),
                     "CT", 0.1)
    seen = []

    def fake_run(case_, options, config=None, reference=None):
        seen.append((options.seed, config.seed, config.lambda_rc, config.lambda_ic,
                     config.steps))
        return case_.noisy, 1.0, dict(steps=config.steps)

    monkeypatch.setattr(run, "run_nsn2n", fake_run)
    rows = run.loss_term_rows(case, [3, 4], log=lambda row: None)
    balanced = run.config_for("balanced")
    assert seen == [(3, 3, balanced.lambda_rc, balanced.lambda_ic, balanced.steps),
                    (3, 3, 0.0, 0.0, balanced.steps),
                    (4, 4, balanced.lambda_rc, balanced.lambda_ic, balanced.steps),
                    (4, 4, 0.0, 0.0, balanced.steps)]
    assert (balanced.lambda_rc, balanced.lambda_ic) == (0.5, 1.0)
    assert [r.note for r in rows][:2] == [f"seed 3, {balanced.steps} steps"] * 2
    assert rows[0].psnr_in == rows[1].psnr_in  # the same fake output scores the same
