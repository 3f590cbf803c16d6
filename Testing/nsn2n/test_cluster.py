import numpy as np
import pytest

from nsn2n.batch import DONE, FAILED, cases_from_folder, run_serial
from nsn2n.cli import EXIT_FAILED, main
from nsn2n.cluster import device_for_worker, local_workers, plan_workers, run_on_cluster
from nsn2n.options import DenoiseOptions
from nsn2n.volume import read_volume

pytest.importorskip("distributed")
QUICK = DenoiseOptions(steps=4, seed=3, device="cpu")


def test_local_workers_one_per_gpu_else_per_threads():
    assert local_workers(threads=1, cpus=8) == 8
    assert local_workers(threads=4, cpus=8) == 2
    assert local_workers(threads=16, cpus=8) == 1
    assert local_workers(threads=1, cpus=8, gpus=2) == 2


def test_auto_runs_small_machines_in_process_and_spreads_larger_ones():
    assert plan_workers(cpus=2) == (1, 2)  # measured: one 2-thread case beats two
    assert plan_workers(cpus=16) == (4, 4)
    assert plan_workers(threads=1, cpus=4) == (4, 1)
    assert plan_workers(cpus=16, gpus=2) == (2, 4)


def test_each_local_worker_gets_its_own_gpu():
    assert [device_for_worker("auto", name, 2) for name in (0, 1, 2, 3)] == [
        "cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert device_for_worker("auto", "tcp://10.0.0.2:4000", 2) == "auto"  # external worker
    assert device_for_worker("auto", 1, 1) == "auto"  # one card: nothing to choose
    assert device_for_worker("cpu", 1, 4) == "cpu"  # the user's choice stands


def test_a_local_cluster_gives_the_serial_outputs_and_isolates_a_failure(cohort, tmp_path):
    serial = cases_from_folder(cohort, tmp_path / "serial", QUICK)
    run_serial(serial, lambda record: None, threads=1)
    spread = cases_from_folder(cohort, tmp_path / "cluster", QUICK)
    records = []
    run_on_cluster(spread, records.append, workers=2, threads=1)
    status = {r["name"]: r["status"] for r in records}
    assert status == {"a.nrrd": DONE, "site2/b.nii.gz": DONE, "site2/broken.mha": FAILED}
    for one, other in zip(serial, spread):
        if one.output.exists():
            assert np.array_equal(read_volume(one.output).array,
                                  read_volume(other.output).array)
            assert read_volume(other.output).geometry == read_volume(one.input).geometry


def test_the_command_runs_on_a_local_cluster(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["batch", str(cohort), str(out), "--steps", "4", "--device", "cpu",
                 "--progress", "none", "--workers", "2"])
    assert code == EXIT_FAILED  # the broken case
    err = capsys.readouterr().err
    assert "3 to run on 2 workers" in err and "2 of 3 cases done" in err
