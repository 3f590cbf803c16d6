"""What a run touches: no network at all, and files only where the user said (the
output, its preview and report) and in the temporary folder.  The command runs in a
child process under an audit hook (PEP 578) that refuses every socket and records every
file the Python side writes, renames, creates or removes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from Testing.helpers import write_ct

AUDITED = r'''
import json, os, sys

touched = []
NETWORK = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto",
           "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
           "urllib.Request", "http.client.connect"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def hook(event, args):
    if event in NETWORK:
        touched.append(["network", event])
        raise PermissionError("network blocked by the test: " + event)
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int):
            return
        if (mode and any(c in mode for c in "wax+")) or (flags or 0) & WRITE_FLAGS:
            touched.append(["write", os.fsdecode(path)])
    elif event in ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod",
                   "os.truncate", "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp",
                   "os.symlink", "os.link"):
        if args and not isinstance(args[0], int):
            touched.append([event] + [os.fsdecode(a) for a in args[:2]
                                      if isinstance(a, (str, bytes, os.PathLike))])


sys.addaudithook(hook)
from nsn2n.cli import main

code = main(sys.argv[1:])
print("AUDIT " + json.dumps(touched))
sys.exit(code)
'''


def audited_run(arguments, tmp_path):
    environment = dict(os.environ, TMPDIR=str(tmp_path / "tmp"), HOME=str(tmp_path / "home"),
                       PYTHONDONTWRITEBYTECODE="1")
    # torch, once imported in this test process, exports its cache folder for children
    environment.pop("TORCHINDUCTOR_CACHE_DIR", None)
    for folder in ("tmp", "home"):
        (tmp_path / folder).mkdir()
    done = subprocess.run([sys.executable, "-c", AUDITED] + arguments, capture_output=True,
                          text=True, env=environment, cwd=str(tmp_path / "home"), timeout=600)
    audit = next(line for line in done.stdout.splitlines() if line.startswith("AUDIT "))
    return done, json.loads(audit[len("AUDIT "):])


def outside(touched, *allowed):
    allowed = [os.path.realpath(a) for a in allowed]
    return [entry for entry in touched if entry[0] == "network" or any(
        not any(os.path.realpath(p) == a or os.path.realpath(p).startswith(a + os.sep)
                for a in allowed) for p in entry[1:])]


@pytest.mark.parametrize("command", ["denoise", "batch"])
def test_a_run_uses_no_network_and_writes_only_its_outputs_and_temporary_files(tmp_path,
                                                                                command):
    source = write_ct(tmp_path / "in" / "ct.nrrd", 0)
    out = tmp_path / "out"
    out.mkdir()
    options = ["--steps", "8", "--device", "cpu", "--progress", "none"]
    if command == "denoise":
        arguments = ["denoise", str(source), str(out / "ct.nrrd"), "--preview",
                     str(out / "ct.png"), "--report", str(out / "ct.json")] + options
    else:
        arguments = ["batch", str(source.parent), str(out), "--workers", "1"] + options
    done, touched = audited_run(arguments, tmp_path)
    assert done.returncode == 0, done.stderr
    assert any(entry[0] == "os.rename" for entry in touched)  # the hook does see writes
    assert outside(touched, out, tmp_path / "tmp") == []
    assert not list((tmp_path / "home").iterdir())
    # left in the temporary folder: nothing of ours; torch makes its (empty) compiler
    # cache folder there when its optimizers are imported, and reuses it
    left = [p for p in (tmp_path / "tmp").iterdir()]
    assert all(p.name.startswith("torchinductor_") and not list(p.iterdir()) for p in left)
    assert Path(source).exists() and (out / "ct.nrrd").exists()


def test_the_audit_would_catch_a_download_and_a_stray_file(tmp_path):
    script = tmp_path / "stray.py"
    script.write_text("import urllib.request\n"
                      "open('stray.txt', 'w').write('x')\n"
                      "try:\n"
                      "    urllib.request.urlopen('http://example.com', timeout=1)\n"
                      "except Exception:\n"
                      "    pass\n")
    hooked = AUDITED.replace("from nsn2n.cli import main\n\ncode = main(sys.argv[1:])",
                             f"exec(open({str(script)!r}).read())\ncode = 0")
    environment = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", hooked], capture_output=True, text=True,
                          cwd=str(tmp_path), env=environment, timeout=60)
    touched = json.loads(done.stdout.split("AUDIT ", 1)[1])
    assert ["write", "stray.txt"] in touched
    assert any(entry[0] == "network" for entry in touched)
