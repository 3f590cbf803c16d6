"""One run at a time per output path.

Writes are atomic (``volume.write_atomically``), so two runs writing the same output
could never mix their files, but the slower one would silently replace the other's
result after minutes of work.  A run claims its output first with a small lock file
beside it, created exclusively: the second run stops at once with one line naming the
first.  A lock left by a run that was killed is taken over when its process is known to
be gone (same host); otherwise the message says which file to remove.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from pathlib import Path
from typing import Iterator, Optional

from .errors import OutputError

LOCK_SUFFIX = ".nsn2n-lock"


def lock_path(output) -> Path:
    output = Path(output).resolve()
    return output.parent / f".{output.name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def claimed(output) -> Iterator[Path]:
    """Hold the claim on ``output`` (a file, or a DICOM series folder) for the block."""
    path = lock_path(output)
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now().isoformat(timespec="seconds")}
    for attempt in (1, 2):
        try:
            handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            holder = _holder(path)
            if attempt == 1 and _is_gone(holder, me["host"]):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                continue
            raise OutputError(f"{output} is being written by another run ({_describe(holder)})"
                              f"; wait for it to finish, or remove {path} if that run is "
                              "gone") from None
        except OSError as exc:
            raise OutputError(f"cannot write to {path.parent}: {exc.strerror}") from None
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        json.dump(me, stream)
    try:
        yield path
    finally:
        if _holder(path) == me:  # never another run's claim, taken over meanwhile
            with contextlib.suppress(OSError):
                os.remove(path)


def _holder(path: Path) -> Optional[dict]:
    try:
        with open(path, encoding="utf-8") as stream:
            holder = json.load(stream)
        return holder if isinstance(holder, dict) else None
    except (OSError, ValueError):  # gone, or caught half-written by its owner
        return None


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return "owner unknown"
    return (f"process {holder.get('pid')} on {holder.get('host')} since "
            f"{holder.get('started')}")


def _is_gone(holder: Optional[dict], host: str) -> bool:
    """The claim's process has ended: known only for a process on this host."""
    if not holder or holder.get("host") != host or not isinstance(holder.get("pid"), int):
        return False
    return not process_alive(holder["pid"])


def process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        synchronize, wait_timeout, access_denied = 0x00100000, 0x102, 5
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(synchronize, False, pid)
        if not handle:  # no such process, or another user's
            return ctypes.get_last_error() == access_denied
        try:
            return kernel32.WaitForSingleObject(handle, 0) == wait_timeout
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
