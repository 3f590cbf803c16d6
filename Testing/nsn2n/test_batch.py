import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nsn2n import batch
from nsn2n.batch import (DONE, FAILED, Case, cases_from_folder, cases_from_manifest, is_done,
                         pending, read_record, run_case, run_serial)
from nsn2n.cli import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, main
from nsn2n.errors import InputError
from nsn2n.options import DenoiseOptions
from nsn2n.outputlock import LOCK_SUFFIX
from Testing.helpers import write_ct

QUICK = DenoiseOptions(steps=4, seed=3, device="cpu")
QUICK_FLAGS = ["--steps", "4", "--seed", "3", "--device", "cpu", "--progress", "none",
               "--workers", "1"]


def test_a_folder_gives_one_case_per_volume_with_a_mirrored_output(cohort, tmp_path):
    cases = cases_from_folder(cohort, tmp_path / "out", QUICK)
    assert [c.name for c in cases] == ["a.nrrd", "site2/b.nii.gz", "site2/broken.mha"]
    assert cases[1].output == tmp_path / "out" / "site2" / "b.nii.gz"
    assert cases[1].record == tmp_path / "out" / "site2" / "b.nii.gz.nsn2n.json"
    converted = cases_from_folder(cohort, tmp_path / "out", QUICK, "b.*", ".nrrd")
    assert [c.output.name for c in converted] == ["b.nrrd"]
    inside = cases_from_folder(cohort, cohort / "out", QUICK)  # outputs of an earlier run
    write_ct(cohort / "out" / "a.nrrd")
    assert len(cases_from_folder(cohort, cohort / "out", QUICK)) == len(inside) == 3
    with pytest.raises(InputError, match="no volumes"):
        cases_from_folder(cohort, tmp_path / "out", QUICK, "*.dcm")
    with pytest.raises(InputError, match="does not exist"):
        cases_from_folder(tmp_path / "nowhere", tmp_path / "out", QUICK)


def test_a_folder_of_dicom_files_is_one_series_case(tmp_path):
    series = tmp_path / "in" / "patient1" / "ct"
    series.mkdir(parents=True)
    for index in range(3):
        (series / f"{index}.dcm").write_bytes(b"")
    (case,) = cases_from_folder(tmp_path / "in", tmp_path / "out", QUICK)
    assert case.input == series and case.output == tmp_path / "out" / "patient1" / "ct"


def test_a_manifest_gives_per_case_options_and_is_checked_before_anything_runs(cohort,
                                                                              tmp_path):
    manifest = cohort / "cases.csv"
    manifest.write_text("input,output,preset,steps,seed,noise_sigma\n"
                        "a.nrrd,,fast,,,\n"
                        "site2/b.nii.gz,renamed/b.nrrd,,6,9,12.5\n", encoding="utf-8")
    first, second = cases_from_manifest(manifest, tmp_path / "out", QUICK)
    assert first.output == tmp_path / "out" / "a.nrrd" and first.options.preset == "fast"
    assert first.options.steps == 4 and first.options.seed == 3  # the command's
    assert second.output == tmp_path / "out" / "renamed" / "b.nrrd"
    assert (second.options.steps, second.options.seed) == (6, 9)
    assert first.options.noise_sigma is None and second.options.noise_sigma == 12.5
    bad = {"input,colour\na.nrrd,red\n": "unknown: colour",
           "output\nx.nrrd\n": "needs an 'input' column",
           "input,steps\na.nrrd,many\n": "line 2: steps must be a number",
           "input,preset\na.nrrd,slow\n": "line 2: unknown preset",
           "input\nmissing.nrrd\n": "line 2: input does not exist",
           "input,output\na.nrrd,x.nrrd\nsite2/b.nii.gz,x.nrrd\n": "both be written",
           "input\n": "lists no cases"}
    for text, message in bad.items():
        manifest.write_text(text, encoding="utf-8")
        with pytest.raises(InputError, match=message):
            cases_from_manifest(manifest, tmp_path / "out", QUICK)


def test_a_case_writes_its_output_then_its_record_and_a_failure_is_recorded(cohort, tmp_path):
    good, _, broken = cases_from_folder(cohort, tmp_path / "out", QUICK)
    record = run_case(good, threads=1)
    assert record["status"] == DONE and good.output.is_file()
    saved = json.loads(good.record.read_text(encoding="utf-8"))
    assert saved["options"]["seed"] == 3 and saved["report"]["steps"] == 4
    assert {"nsn2n", "torch", "numpy", "SimpleITK", "python"} <= set(saved["versions"])
    assert saved["seconds"] > 0 and saved["report"]["noise_sigma"] > 0
    assert is_done(good)
    failed = run_case(broken, threads=1)
    assert failed["status"] == FAILED and "cannot read" in failed["error"]
    assert not broken.output.exists() and not is_done(broken)
    assert json.loads(broken.record.read_text(encoding="utf-8"))["status"] == FAILED
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".nsn2n-")]
    assert leftovers == []


def test_done_means_same_options_and_the_output_still_there(cohort, tmp_path):
    case = cases_from_folder(cohort, tmp_path / "out", DenoiseOptions(steps=4, seed=3))[0]
    run_case(case, threads=1, device="cpu")  # a worker's own card: the options as asked
    assert json.loads(case.record.read_text(encoding="utf-8"))["options"]["device"] == "auto"
    assert pending([case]) == []
    other = Case(case.input, case.output, DenoiseOptions(steps=5, seed=3), case.name)
    assert pending([other]) == [other]  # other options: run again
    case.output.unlink()
    assert pending([case]) == [case]  # output deleted: run again


def test_the_command_runs_every_case_skips_finished_ones_and_isolates_failures(
        cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(cohort), str(out)] + QUICK_FLAGS) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "3 cases: 0 already done, 3 to run" in err
    assert "2 of 3 cases done (0 already done before this run), 1 failed" in err
    assert "failed: site2/broken.mha: cannot read" in err
    assert (out / "a.nrrd").is_file() and (out / "site2" / "b.nii.gz").is_file()
    with open(out / batch.SUMMARY_NAME, newline="", encoding="utf-8") as stream:
        rows = {row["case"]: row for row in csv.DictReader(stream)}
    assert rows["a.nrrd"]["status"] == DONE and rows["site2/broken.mha"]["status"] == FAILED
    before = (out / "a.nrrd").stat().st_mtime_ns
    (cohort / "site2" / "broken.mha").unlink()  # the user fixes the bad case
    write_ct(cohort / "site2" / "broken.mha", 2)
    assert main(["batch", str(cohort), str(out)] + QUICK_FLAGS) == EXIT_OK
    assert "3 cases: 2 already done, 1 to run" in capsys.readouterr().err
    assert (out / "a.nrrd").stat().st_mtime_ns == before  # not denoised twice


def test_bad_batch_input_is_one_line(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "nowhere"), str(tmp_path / "out")]
                + QUICK_FLAGS) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip().startswith("nsn2n: error: input folder")
    write_ct(tmp_path / "in" / "a.nrrd")
    assert main(["batch", str(tmp_path / "in"), str(tmp_path / "no" / "out")]
                + QUICK_FLAGS) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    assert main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--workers", "0",
                 "--progress", "none"]) == EXIT_BAD_INPUT
    assert main(["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--preset",
                 "fast", "--steps", "0", "--progress", "none"]) == EXIT_BAD_INPUT
    assert not (tmp_path / "out").exists()  # refused before anything was made


def test_serial_run_stops_at_a_cancel_between_cases(cohort, tmp_path):
    class AfterFirst:
        def __init__(self):
            self.records = []

        def is_set(self):
            return len(self.records) >= 1

    cancel = AfterFirst()
    cases = cases_from_folder(cohort, tmp_path / "out", QUICK)
    with pytest.raises(batch.Cancelled):
        run_serial(cases, cancel.records.append, threads=1, cancel=cancel)
    assert len(cancel.records) == 1 and len(pending(cases)) == 2


def test_a_killed_batch_resumes_without_redoing_or_half_written_files(tmp_path):
    root = tmp_path / "in"
    for index in range(4):
        write_ct(root / f"v{index}.nrrd", index)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nsn2n", "batch", str(root), str(out), "--steps",
               "150", "--device", "cpu", "--progress", "none", "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.nsn2n.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # no cleanup at all: a crash, a power cut
    process.wait(timeout=30)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nsn2n.json")}
    assert 1 <= len(finished) < 4
    cases = cases_from_folder(root, out, DenoiseOptions(steps=150, device="cpu"))
    for case in cases:  # a record is written after its output, never before
        assert case.output.exists() or not case.record.exists()
    # hidden leftovers only: a temporary file, the killed run's claim on its output
    assert [p for p in out.iterdir() if p.suffix not in (".nrrd", ".json")
            and not p.name.startswith(".nsn2n-") and not p.name.endswith(LOCK_SUFFIX)] == []
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_OK, done.stderr
    assert not [p for p in out.iterdir() if p.name.endswith(LOCK_SUFFIX)]  # taken over
    assert f"{len(finished)} already done, {4 - len(finished)} to run" in done.stderr
    for name, stamp in finished.items():
        assert (out / name).stat().st_mtime_ns == stamp  # not denoised again
    assert pending(cases) == []


def test_sigterm_cancels_a_serial_batch_between_writes(cohort, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "nsn2n", "batch", str(cohort), str(out), "--steps",
               "100000", "--device", "cpu", "--progress", "none", "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    time.sleep(5)  # inside the first case's training
    process.terminate()
    _, err = process.communicate(timeout=30)
    assert process.returncode == EXIT_CANCELLED, err
    assert "run the same command again" in err
    assert not (out / "a.nrrd").exists() and not (out / "a.nrrd.nsn2n.json").exists()


def test_a_dicom_case_run_again_with_other_options_replaces_its_derived_series(tmp_path,
                                                                              phantom):
    pydicom = pytest.importorskip("pydicom")
    from Testing.nsn2n.test_dicom import write_source_series

    hu = np.rint(phantom[:6] * 1200 - 1000).astype(np.int16)
    (tmp_path / "in").mkdir()
    source = write_source_series(tmp_path / "in" / "ct", hu)
    out = tmp_path / "out"
    case = cases_from_folder(tmp_path / "in", out, DenoiseOptions(steps=3, seed=3))[0]

    def series_uid():
        files = sorted((out / "ct").iterdir())
        return {pydicom.dcmread(str(f)).SeriesInstanceUID for f in files}, len(files)

    assert run_case(case, threads=1)["status"] == DONE
    first, count = series_uid()
    again = Case(source, case.output, DenoiseOptions(steps=4, seed=3), case.name)
    assert run_case(again, threads=1)["status"] == DONE, read_record(again)["error"]
    second, recount = series_uid()
    assert len(second) == 1 and second != first and recount == count == 6
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    (out / "ct" / "notes.txt").write_text("mine", encoding="utf-8")  # not only the series
    record = run_case(Case(source, case.output, DenoiseOptions(steps=5, seed=3), case.name),
                      threads=1)
    assert record["status"] == FAILED and "not empty" in record["error"]
    assert (out / "ct" / "notes.txt").read_text(encoding="utf-8") == "mine"
