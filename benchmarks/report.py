"""How every benchmark reports: Markdown tables, the machine line, and writing a table into
its marked section of a documentation file."""

from __future__ import annotations

import dataclasses
import json
import platform
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; cells are written with ``str`` (format numbers before)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_flags() -> str:
    """The CPU features that decide the precision path (bf16 is native only with them)."""
    try:
        flags = next(line.split(":", 1)[1].split() for line in
                     Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return "flags unknown"
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return "flags " + (" ".join(f for f in wanted if f in flags) or "none of " + "/".join(wanted))


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu} ({cpu_flags()}), {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def update_section(path: Path, kind: str, text: str) -> None:
    """Replace the text between ``<!-- KIND:start -->`` and ``<!-- KIND:end -->``."""
    start, end = f"<!-- {kind}:start -->", f"<!-- {kind}:end -->"
    content = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        raise SystemExit(f"{path} has no {start} ... {end} section")
    path.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content),
                    encoding="utf-8")


def save(out: Path, kind: str, text: str, rows: object, docs: Optional[Path] = None) -> None:
    """Print ``text``, keep it and the rows (dataclasses, in any JSON structure) under
    ``out``, and put the text into its section of ``docs``."""
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{kind}.md").write_text(text + "\n", encoding="utf-8")
    (out / f"{kind}.json").write_text(json.dumps(rows, indent=1, default=dataclasses.asdict),
                                      encoding="utf-8")
    if docs is not None:
        update_section(Path(docs), kind, text)
