import json

import pytest

from benchmarks import noise as noise_benchmark
from Testing.simulators.volumes import shared_across_slices


def test_rows_compare_the_estimate_with_the_known_noise_and_are_saved(tmp_path, capsys):
    from benchmarks.report import save
    from Testing.helpers import smooth_phantom, white_noise

    clean = smooth_phantom((14, 64, 64))
    rows = [noise_benchmark.estimate_row("independent", clean + white_noise(0.05, clean.shape),
                                         0.05, True)]
    margin = white_noise(0.05, (16, 64, 64), seed=1)
    rows.append(noise_benchmark.estimate_row(
        "shared", clean + shared_across_slices(margin, 0.5), 0.05, True))
    rows.append(noise_benchmark.NoiseRow("no repeat", None, 1.0, 1.1, False))
    assert not rows[0].correlated and rows[1].correlated
    assert rows[0].ratio == pytest.approx(1.0, abs=0.25) and rows[1].ratio < 0.6
    text = noise_benchmark.table(rows)
    assert "| no repeat | – | 1 | – | 1.10 | no |" in text
    save(tmp_path, "noise", text, rows)
    saved = json.loads((tmp_path / "noise.json").read_text())
    assert saved[1]["correlated"] is True and saved[2]["true_sigma"] is None
