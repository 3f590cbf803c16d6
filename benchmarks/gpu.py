"""The product on a CUDA GPU against the same machine's CPU (``python -m benchmarks gpu``).

The real sets (``realdata.SETS``, the ASL series) run on the GPU (bf16 and fp32) and on
the CPU, each preset timed on its second run (the first pays CUDA's start-up); the GPU's
output is compared with the CPU's and with itself under the same seed; then CT-like
512 x 512 volumes show where a GPU run spends its time.

GPU machines without SimpleITK (no package index) read the sets as arrays: pack them
where SimpleITK is installed (``--pack real.npz``), carry the file, run with
``--arrays real.npz``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .realdata import (DEFAULT_FOLDER, SERIES_FILE, SERIES_REFERENCE, SERIES_REPEAT,
                       SERIES_STRIDE, SERIES_TEST, SERIES_USED, SETS, Scored)
from .report import machine, markdown_table, save

SERIES_VOLUMES = SERIES_REFERENCE.stop  # every volume the series row uses
CT_DEPTH = 64  # slices of the CT-like 512 x 512 volume
POST_PHASES = ("nonlocal", "guard", "wiener", "check")  # numpy stages on the CPU


@dataclasses.dataclass
class GpuRow:
    case: str
    device: str
    precision: str
    preset: str
    seconds: float
    train: float
    after_training: float  # the stages after training, which run on the CPU
    gpu_peak_gib: float
    psnr_ref: Optional[float] = None


def pack(folder: Path, path: Path) -> None:
    """The real sets as arrays, with their geometry (spacing, origin, direction)."""
    from nsn2n.volume import read_volume

    arrays: Dict[str, np.ndarray] = {}
    names = {n for spec in SETS for n in (spec.input, spec.reference, spec.repeat)}
    for name in sorted(names) + [SERIES_FILE]:
        volume = read_volume(folder / name)
        g = volume.geometry
        stem = name.split(".")[0]
        arrays[stem] = volume.array[:SERIES_VOLUMES] if volume.dimension == 4 else volume.array
        arrays[stem + "_geometry"] = np.array(g.spacing + g.origin + tuple(g.direction))
        arrays[stem + "_frames"] = np.array((volume.dimension,) + tuple(volume.frames))
    np.savez_compressed(path, **arrays)


def unpack(path: Path):
    from nsn2n.volume import Geometry, Volume

    data = np.load(path)

    def volume(name: str):
        g = data[name + "_geometry"]
        geometry = Geometry(tuple(g[:3]), tuple(g[3:6]), tuple(g[6:15]))
        dimension, *frames = data[name + "_frames"]
        return Volume(data[name], geometry, None, int(dimension), tuple(frames))

    return volume


def timed_run(case: str, volume, options, score, rows: List[GpuRow]):
    import torch

    from nsn2n.pipeline import denoise

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result, report = denoise(volume, options)
    if cuda:
        torch.cuda.synchronize()
    phases = report.phase_seconds
    rows.append(GpuRow(
        case, report.device, report.precision, options.preset,
        round(time.perf_counter() - started, 2), round(phases.get("train", 0.0), 2),
        round(sum(phases.get(p, 0.0) for p in POST_PHASES), 2),
        round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else 0.0,
        None if score is None else round(score(result.array).psnr_ref, 2)))
    print(json.dumps(dataclasses.asdict(rows[-1])), flush=True)
    return result.array


def run(args) -> int:
    import torch

    from nsn2n.options import DenoiseOptions
    from nsn2n.volume import Geometry, Volume
    from Testing.helpers import changing_anatomy

    if args.pack:
        pack(Path(args.data or DEFAULT_FOLDER), Path(args.pack))
        return 0
    if not torch.cuda.is_available():
        raise SystemExit("python -m benchmarks gpu needs a CUDA GPU")
    if args.arrays:
        volume_of = unpack(Path(args.arrays))
    else:
        from nsn2n.volume import read_volume

        folder = Path(args.data or DEFAULT_FOLDER)
        volume_of = lambda stem: read_volume(folder / f"{stem}.nii.gz")  # noqa: E731
    rows: List[GpuRow] = []
    notes = []
    presets = args.presets.split(",")
    for spec in SETS:
        stems = [name.split(".")[0] for name in (spec.input, spec.reference, spec.repeat)]
        volume = volume_of(stems[0])
        scored = Scored.of(volume.array.astype(np.float64),
                           volume_of(stems[1]).array.astype(np.float64),
                           volume_of(stems[2]).array.astype(np.float64))
        score = lambda out, s=scored, n=spec.name: s.row(n, "", out, 0.0)  # noqa: E731
        outputs = {}
        for device, precision in (("cuda", "auto"), ("cuda", "fp32"), ("cpu", "fp32"),
                                  ("cpu", "auto")):
            for preset in presets if (device, precision) == ("cuda", "auto") else ["balanced"]:
                options = DenoiseOptions(preset=preset, device=device, precision=precision,
                                         seed=args.seed)
                if not rows:  # CUDA's start-up (context, kernels) is paid once, untimed
                    timed_run("warm-up", volume, options, None, [])
                outputs[device, precision, preset] = timed_run(
                    spec.name, volume, options, score, rows).astype(np.float64)
        gpu, cpu = outputs["cuda", "auto", "balanced"], outputs["cpu", "fp32", "balanced"]
        again = timed_run(spec.name, volume, DenoiseOptions(device="cuda", seed=args.seed),
                          None, [])
        notes.append(f"{spec.name}: GPU bf16 against CPU fp32, rms difference "
                     f"{np.sqrt(np.mean((gpu - cpu) ** 2)) / scored.sigma:.3f} x the pair's "
                     f"sigma; the same seed again on the GPU "
                     f"{'bit-identical' if np.array_equal(again, gpu) else 'differs'}")
    series = volume_of(SERIES_FILE.split(".")[0])
    values = series.array.astype(np.float64)
    scored = Scored.of(values[SERIES_TEST], values[SERIES_REFERENCE].mean(0),
                       values[SERIES_REPEAT])
    used = dataclasses.replace(series, array=series.array[:SERIES_USED])
    timed_run(f"ASL series: vol {SERIES_TEST} from vols 0-{SERIES_USED - 1}", used,
              DenoiseOptions(method="series", series_stride=SERIES_STRIDE, device="cuda",
                             seed=args.seed),
              lambda out: scored.row("series", "", out[SERIES_TEST], 0.0), rows)
    _, noisy = changing_anatomy(depth=CT_DEPTH, size=512, sigma=0.03, seed=args.seed)
    ct = Volume((noisy * 1000).astype(np.int16), Geometry.identity((0.7, 0.7, 2.5)), "CT")
    for preset in presets[:2]:
        timed_run(f"CT-like 512x512x{CT_DEPTH}", ct,
                  DenoiseOptions(preset=preset, device="cuda", seed=args.seed), None, rows)
    text = table(rows, notes, f"{torch.cuda.get_device_name(0)}; CPU: {machine()}")
    save(Path(args.out), "gpu", text, rows, args.docs)
    return 0


def table(rows: List[GpuRow], notes: List[str], where: str) -> str:
    body = markdown_table(
        ("case", "device", "precision", "preset", "seconds", "training", "after training",
         "GPU peak (GiB)", "PSNR vs reference"),
        ((r.case, r.device, r.precision, r.preset, f"{r.seconds:.1f}", f"{r.train:.1f}",
          f"{r.after_training:.1f}", f"{r.gpu_peak_gib:.2f}" if r.device != "cpu" else "",
          "" if r.psnr_ref is None else f"{r.psnr_ref:.2f}") for r in rows))
    return "\n".join([f"`python -m benchmarks gpu` on {where}.", "", body, ""]
                     + [f"- {note}" for note in notes])
