"""Train once, apply to many (``python -m benchmarks transfer``): a network trained on one
volume of a protocol (``--save-model``), fine-tuned on the other volumes (``--model``),
against training each from scratch: quality and time.

Two protocols: slabs of the MNI T1 template at other heights, each with its own 5 %
Rician noise (the same scanner and sequence, other anatomy), and real volumes of the ASL
series of ``shared/realdata`` (one acquisition, other times), each scored against the mean
of the ten volumes of the same kind nearest to it in time, itself left out.  fp32, the path
of most users' CPUs; every run in this process, one after another.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.volume import Geometry, Volume

from .report import machine, markdown_table, save

# MNI slabs (first slice, 32 slices each): the first trains, the others are the protocol's
# other volumes.
SLABS = (40, 80, 120)
SLAB_SLICES = 32
ASL_SOURCE, ASL_TARGETS = 50, (60, 70, 80)


@dataclasses.dataclass
class TransferRow:
    protocol: str
    volume: str
    run: str
    steps: int
    psnr: float
    seconds: float


def mri_volumes() -> Iterator[Tuple[str, Volume, Callable[[np.ndarray], float]]]:
    from nsn2n import metrics
    from Testing.simulators.volumes import add_rician, body_mask, mri_clean_slab

    for index, first in enumerate(SLABS):
        clean = mri_clean_slab(SLAB_SLICES, first)
        noisy = add_rician(clean, 0.05 * float(clean.max()), seed=index)
        mask = body_mask(clean)
        yield (f"slab {first}-{first + SLAB_SLICES}",
               Volume(noisy, Geometry.identity((1.0, 1.0, 1.0)), "MR"),
               lambda out, clean=clean, mask=mask: metrics.psnr(out, clean, mask))


def asl_volumes(data: Optional[str]
                ) -> Iterator[Tuple[str, Volume, Callable[[np.ndarray], float]]]:
    import SimpleITK as sitk

    from nsn2n import metrics

    from .realdata import DEFAULT_FOLDER, head_mask

    image = sitk.ReadImage(str(Path(data or DEFAULT_FOLDER) / "asl_series.nii.gz"))
    series = sitk.GetArrayFromImage(image).astype(np.float64)  # (t, z, y, x)
    spacing = image.GetSpacing()[:3]
    for index in (ASL_SOURCE,) + ASL_TARGETS:
        same_kind = [t for t in range(index % 2, len(series), 2) if t != index]
        nearest = sorted(same_kind, key=lambda t: abs(t - index))[:10]
        reference = series[nearest].mean(axis=0)
        mask = head_mask(reference)
        data_range = float(np.percentile(reference[mask], 99.9))
        volume = Volume(series[index].astype(np.int16), Geometry.identity(spacing), "MR")
        yield (f"volume {index}", volume, lambda out, ref=reference, m=mask, r=data_range:
               metrics.psnr(out, ref, m, r))


def run_protocol(name: str, volumes, options: DenoiseOptions, folder: Path
                 ) -> List[TransferRow]:
    """The first volume trains from scratch and saves its network; every other volume is
    denoised from scratch, from the saved network fine-tuned (the default steps), and
    from the saved network after a single step (nearly as saved)."""
    rows: List[TransferRow] = []
    model = str(folder / f"{name.split()[0].lower()}.pt")
    for index, (volume_name, volume, score) in enumerate(volumes):
        rows.append(TransferRow(name, volume_name, "input (untouched)", 0,
                                round(float(score(volume.array)), 3), 0.0))
        runs = ([("from scratch, saved", dataclasses.replace(options, save_model=model))]
                if index == 0 else
                [("from scratch", options),
                 ("saved network, fine-tuned (default)",
                  dataclasses.replace(options, model=model)),
                 ("saved network, 1 step", dataclasses.replace(options, model=model,
                                                               steps=1))])
        for label, run_options in runs:
            started = time.perf_counter()
            result, report = denoise(volume, run_options)
            seconds = time.perf_counter() - started
            rows.append(TransferRow(name, volume_name, label, report.steps,
                                    round(float(score(result.array)), 3), round(seconds, 1)))
            print(f"{name}, {volume_name}, {label}: {rows[-1].psnr:.3f} dB, "
                  f"{report.steps} steps, {seconds:.1f} s", flush=True)
    return rows


def table(rows: List[TransferRow]) -> str:
    scratch = {(r.protocol, r.volume): r for r in rows if r.run == "from scratch"}
    body = []
    for r in rows:
        base = scratch.get((r.protocol, r.volume))
        versus = ("-" if base is None or r.run in ("from scratch", "input (untouched)")
                  else f"{r.psnr - base.psnr:+.2f} dB, {r.seconds / base.seconds:.2f}x time")
        body.append((r.protocol, r.volume, r.run, r.steps, f"{r.psnr:.2f}",
                     f"{r.seconds:.0f}" if r.seconds else "-", versus))
    return markdown_table(("protocol", "volume", "run", "steps", "PSNR (dB)", "time (s)",
                           "against from scratch"), body)


def run(args) -> int:
    options = DenoiseOptions(preset=args.preset, precision="fp32", seed=args.seed)
    rows: List[TransferRow] = []
    with tempfile.TemporaryDirectory(prefix="nsn2n-transfer-") as folder:
        rows += run_protocol("MNI T1 slabs, 5 % Rician", mri_volumes(), options,
                             Path(folder))
        rows += run_protocol("real ASL series", asl_volumes(args.data), options,
                             Path(folder))
    text = "\n\n".join([
        f"Machine: {machine()}. `python -m benchmarks transfer`, preset `{args.preset}`, "
        f"fp32, seed {args.seed}; {time.strftime('%Y-%m-%d')}. The first volume of each "
        "protocol trains from scratch and saves its network; PSNR in the head mask against "
        "the clean slab (MNI) or the mean of the ten nearest volumes of the same kind (ASL).",
        table(rows)])
    save(Path(args.out), "transfer", text, rows, getattr(args, "docs", None))
    return 0
