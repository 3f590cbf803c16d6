from types import SimpleNamespace

from benchmarks.cancel import stage_at


def test_a_moment_is_placed_in_the_stage_the_timed_run_was_in():
    report = SimpleNamespace(phase_seconds={"noise": 1.0, "train": 6.0, "predict": 3.0})
    total = 12.0  # 2 s outside the stages: each stage's share is scaled up to the run
    assert stage_at(report, 1.0, total) == "noise"
    assert stage_at(report, 5.0, total) == "train"
    assert stage_at(report, 11.5, total) == "predict"
    assert stage_at(report, 12.5, total) == "other"
