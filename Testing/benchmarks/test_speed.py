import pytest

from benchmarks.speed import SpeedRow, eta_error, peak_resident_gib, phase_table, table, verdicts


def row(preset, seconds, quality, estimated, precision="fp32", case="mri5"):
    return SpeedRow(case, "48x224x192", precision, preset, quality, seconds, estimated, 2.0,
                    700, 1.1, {"train": 0.8 * seconds, "wiener": 0.2 * seconds}, 0.08, 0.02)


def test_verdicts_check_the_order_of_the_presets_and_the_estimate():
    rows = [row("fast", 50.0, 35.3, 55.0), row("balanced", 80.0, 35.4, 70.0),
            row("best", 150.0, 35.5, 200.0)]
    text = verdicts(rows, {"mri5": 95.0})
    assert "2 of 3 runs" in text  # best's estimate is 33 % off
    assert "in time yes, in quality yes (ties within 0.005); `balanced` 80 s vs BM4D 95 s" \
        in text
    rows[1] = row("balanced", 80.0, 35.2, 70.0)  # balanced below fast
    assert "in quality NO" in verdicts(rows, {"mri5": 95.0})
    rows[1] = row("balanced", 80.0, 35.297, 70.0)  # a tie: 0.003 dB below fast
    assert "in quality yes" in verdicts(rows, {"mri5": 95.0})
    rows[2] = row("best", 70.0, 35.5, 70.0)  # best faster than balanced
    assert "in time NO" in verdicts(rows, {"mri5": None})
    ssim = [row("fast", 50.0, 0.9240, 55.0, case="us"),  # SSIM ties are finer
            row("balanced", 80.0, 0.9230, 70.0, case="us"),
            row("best", 150.0, 0.9250, 200.0, case="us")]
    assert "in quality NO (ties within 0.0005)" in verdicts(ssim, {}, {"us": "SSIM"})


def test_tables_show_time_against_bm4d_and_every_phase():
    rows = [row("balanced", 80.0, 35.4, 70.0), row("balanced", 40.0, 0.93, 40.0,
                                                   case="us-fine")]
    text = table(rows, {"mri5": 100.0, "us-fine": None}, {"mri5": "PSNR", "us-fine": "SSIM"})
    assert "| 80 | 100 | 0.80 | 70 (-12 %) | 8 / 2 % | 80 % | 1.10 |" in text
    assert "| 0.9300 | 40 | - | - |" in text
    assert "| mri5 | fp32 | balanced | 64.0 | 16.0 |" in phase_table(rows)


def test_eta_error_is_the_worst_prediction_of_the_total_in_each_half():
    shown = [(1.0, 9.0), (2.0, float("nan")), (4.0, 7.0), (6.0, 3.0), (9.0, 1.0)]
    assert eta_error(shown, 10.0, 0) == pytest.approx(0.1)  # 4 + 7 = 11
    assert eta_error(shown, 10.0, 1) == pytest.approx(0.1)  # 6 + 3 = 9
    assert 0 < peak_resident_gib() < 64


def test_budget_runs_are_checked_against_the_time_asked():
    from benchmarks.speed import budget_table, budget_verdict

    budgets = [(54.0, row("balanced", 57.0, 35.3, 50.0)),  # +6 %
               (60.0, row("balanced", 70.0, 35.3, 50.0, case="ct1e4"))]  # +17 %
    assert budget_verdict(budgets) == ("- --max-minutes: at most 10 % over the budget in 1 "
                                       "of 2 runs, within +-10 % in 1; off by +6 to +17 %")
    assert "| mri5 | fp32 | balanced | 54 | 57 | +6 % | 35.30 |" in budget_table(budgets)
