import dataclasses
import json
import types

import numpy as np

from benchmarks import synthetic, targets
from benchmarks.__main__ import main
from nsn2n.volume import Geometry
from Testing.simulators.volumes import BenchCase


def _tiny_case(name, modality):
    clean = np.random.default_rng(0).random((8, 16, 16))
    return BenchCase(name, clean + 0.1, clean, clean > 0.5, Geometry.identity((1, 1, 1)),
                     modality, 0.1)


def test_loss_term_rows_pair_the_shipped_losses_with_the_plain_recon_loss_per_seed(monkeypatch):
    case = _tiny_case("tiny", "CT")
    seen = []

    def fake_run(case_, options, config=None, reference=None):
        seen.append((options.seed, config.seed, config.lambda_rc, config.lambda_ic,
                     config.steps))
        return case_.noisy, 1.0, types.SimpleNamespace(steps=config.steps)

    monkeypatch.setattr(synthetic, "run_nsn2n", fake_run)
    rows = synthetic.loss_term_rows(case, [3, 4], log=lambda row: None)
    balanced = synthetic.config_for("balanced")
    assert seen == [(3, 3, balanced.lambda_rc, balanced.lambda_ic, balanced.steps),
                    (3, 3, 0.0, 0.0, balanced.steps),
                    (4, 4, balanced.lambda_rc, balanced.lambda_ic, balanced.steps),
                    (4, 4, 0.0, 0.0, balanced.steps)]
    assert (balanced.lambda_rc, balanced.lambda_ic) == (0.5, 1.0)
    assert [r.note for r in rows][:2] == [f"seed 3, {balanced.steps} steps"] * 2


def _row(case, method, psnr_in, seconds=100.0, ssim_all=0.96):
    return synthetic.Row(case, method, psnr_in, psnr_in + 2, ssim_all, seconds)


def test_target_table_judges_each_target_from_the_rows():
    rows = [_row("MRI 5%", targets.DIFFUSION, 32.0, 5),
            _row("MRI 5%", targets.BM4D, 36.0, 130),
            _row("MRI 5%", targets.FAST, 33.1, 59),
            _row("MRI 5%", targets.BALANCED, 33.4, 120),
            _row("MRI 5%", targets.PLAIN, 33.0, 118),
            _row("MRI 5%", targets.SUPERVISED, 35.0, 119),
            _row("CT 1e+04", targets.DIFFUSION, 38.0, 30),
            _row("CT 1e+04", targets.NLM, 40.0, 110),
            _row("CT 1e+04", targets.BALANCED, 40.6, 140),
            _row("CT 1e+04", targets.FAST, 39.0, 50),
            _row("CT 1e+04", targets.SUPERVISED, 40.3, 139),
            _row("CT 1e+04", targets.PLAIN, 40.2, 139)]
    lines = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
             for line in targets.target_table(rows).splitlines()[2:]}
    mri_diffusion, = lines["`balanced` >= +1.5 dB over curvature diffusion (MRI)"][:1]
    assert mri_diffusion.startswith("**no**: +1.40")  # 1.4 < 1.5
    ct_classical = lines["`balanced` >= +0.5 dB over the best of diffusion and NLM (CT)"]
    assert ct_classical[0] == "" and ct_classical[1].startswith("yes: +0.60 (40.60 vs NLM")
    over_plain = lines["`balanced` >= +0.5 dB over plain neighbour-slice N2N (CT)"]
    assert over_plain[0] == "+0.40 (33.40 vs plain 33.00) (CT target)"  # no verdict on MRI
    assert over_plain[1].startswith("**no**: +0.40 (40.60 vs plain 40.20)")
    assert lines["`balanced` wall time <= BM4D's"][0].startswith("yes: 120 s vs 130 s")
    gap = lines["within 2.0 dB of the supervised bound at equal time"]
    assert gap[0].startswith("yes: 1.60 dB below") and gap[1].startswith("yes: 0.30 dB above")
    fast = lines["`fast` < 60 s and >= +1 dB over diffusion"]
    assert fast[0].startswith("yes: 59 s, +1.10") and "MRI target" in fast[1]
    assert lines["goal: >= +1.0 dB over BM4D (true sigma) in <= its time"][0].startswith(
        "**no**: -2.60")
    assert targets.target_table([_row("MRI 5%", "noisy input", 26.0)]) == ""


def test_supervised_bound_is_the_network_alone_with_the_plain_run_on_the_same_budget(
        monkeypatch, tmp_path):
    case = _tiny_case("MRI tiny", "MR")
    clean = case.clean
    seen = []

    def fake_run(case_, options, config=None, reference=None):
        seen.append((config, options, reference))
        return case_.noisy, 1.0, types.SimpleNamespace(steps=5, train_seconds=12.5,
                                                      matched_fraction=0.9, recoveries=0)

    monkeypatch.setattr(synthetic, "run_nsn2n", fake_run)
    monkeypatch.setattr(synthetic, "write_png", lambda *args: None)
    rows = synthetic.learned_rows(case, ["balanced"], 7, lambda row: None, tmp_path)
    assert [r.method for r in rows] == [targets.BALANCED, targets.PLAIN, targets.SUPERVISED]
    (_, _, none), (plain, _, _), (supervised, options, reference) = seen
    assert none is None and reference is clean
    assert plain.max_seconds == supervised.max_seconds == 12.5
    assert supervised.guard_factor == 0.0 and not options.bias_correction
    assert supervised.seed == plain.seed == 7


def test_merge_keeps_the_order_and_lets_a_later_run_replace_a_row_of_the_same_case_and_method(
        tmp_path, monkeypatch):
    first = [_row("MRI 5%", "noisy input", 26.0), _row("MRI 5%", targets.BALANCED, 33.0),
             _row("MRI 5%", targets.SUPERVISED, 34.0), _row("CT 1e+04", targets.NLM, 40.0)]
    second = [_row("MRI 5%", targets.SUPERVISED, 35.5), _row("MRI 5%", targets.PLAIN, 32.0),
              _row("CT 5e+03", targets.NLM, 38.0)]
    merged = synthetic.merge_rows([first, second])
    assert [(r.case, r.method, r.psnr_in) for r in merged] == [
        ("MRI 5%", "noisy input", 26.0), ("MRI 5%", targets.BALANCED, 33.0),
        ("MRI 5%", targets.SUPERVISED, 35.5), ("MRI 5%", targets.PLAIN, 32.0),
        ("CT 1e+04", targets.NLM, 40.0), ("CT 5e+03", targets.NLM, 38.0)]

    files = []
    for name, rows in (("a", first), ("b", second)):
        path = tmp_path / name / "synthetic.json"
        path.parent.mkdir()
        path.write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
        files.append(str(path))
    monkeypatch.chdir(tmp_path)
    docs = tmp_path / "benchmarks.md"
    docs.write_text("x\n<!-- synthetic:start -->\nold\n<!-- synthetic:end -->\ny\n")
    assert main(["merge", *files, "--docs", str(docs)]) == 0
    text = docs.read_text()
    assert "old" not in text and "| MRI 5% | " + targets.SUPERVISED + " | 35.50 |" in text
    assert "a/synthetic.json, then b/synthetic.json" in text
    assert "**no**: 2.50 dB below (33.00 vs 35.50)" in text  # targets from the merged rows
    kept = json.loads((tmp_path / "bench-out" / "synthetic.json").read_text())
    assert [row["psnr_in"] for row in kept] == [r.psnr_in for r in merged]
