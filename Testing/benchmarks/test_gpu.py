import numpy as np
import pytest

from benchmarks.gpu import GpuRow, pack, table, unpack
from nsn2n.volume import Geometry, Volume, write_volume


def test_packed_sets_keep_their_voxels_geometry_and_series_axis(tmp_path, monkeypatch):
    import benchmarks.gpu as gpu
    from benchmarks.realdata import RealSet

    monkeypatch.setattr(gpu, "SETS", (RealSet("one", "a.nrrd", "b.nrrd", "a.nrrd"),))
    monkeypatch.setattr(gpu, "SERIES_FILE", "s.nrrd")
    rng = np.random.default_rng(0)
    geometry = Geometry((2.0, 3.0, 6.0), (1.0, -2.0, 3.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))
    for name in ("a", "b"):
        write_volume(Volume(rng.normal(100, 10, (4, 6, 5)).astype(np.float32), geometry),
                     tmp_path / f"{name}.nrrd")
    series = rng.integers(0, 999, (3, 4, 6, 5)).astype(np.int16)
    write_volume(Volume(series, geometry, None, 4, (2.54, 0.0)), tmp_path / "s.nrrd")
    pack(tmp_path, tmp_path / "real.npz")
    volume_of = unpack(tmp_path / "real.npz")
    assert volume_of("a").geometry == geometry and volume_of("a").dimension == 3
    back = volume_of("s")
    assert back.dimension == 4 and np.array_equal(back.array, series)


def test_the_table_leaves_gpu_memory_out_for_the_cpu_and_lists_the_notes():
    rows = [GpuRow("ASL", "cuda", "bf16", "balanced", 4.3, 3.1, 1.2, 0.04, 44.2),
            GpuRow("ASL", "cpu", "fp32", "balanced", 9.9, 8.7, 1.0, 0.0, 44.2)]
    text = table(rows, ["a note"], "a GPU")
    assert "| ASL | cuda | bf16 | balanced | 4.3 | 3.1 | 1.2 | 0.04 | 44.20 |" in text
    assert "| ASL | cpu | fp32 | balanced | 9.9 | 8.7 | 1.0 |  | 44.20 |" in text
    assert text.endswith("- a note")


def test_without_a_gpu_the_benchmark_says_so():
    import torch

    from benchmarks.__main__ import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        main(["gpu"])
