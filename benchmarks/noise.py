"""The noise estimate the product uses, on every kind of volume with a known noise level,
and its test for noise shared by neighbouring slices (``NoiseEstimate.across_to_inplane``).

Rows: the synthetic MRI and CT cases (exact sigma); the MRI 5 % case with its noise
correlated across slices, once in the complex data before the magnitude (as 3-D k-space
filtering does) and once in the magnitude image (as through-plane resampling does), with
neighbouring-slice correlations 0.44 and 0.67; the real sets of ``shared/realdata`` (sigma
from the repeat pair); and, when dipy is installed, two real volumes it ships without
repeats (sigma unknown).  Estimator only, no training: 1-2 minutes (mostly simulating
the CT cases).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from nsn2n.intensity import Normalization
from nsn2n.noise import ACROSS_SLICE_RATIO, estimate_noise
from nsn2n.refine.guard import BAND_SCALES
from nsn2n.volume import read_volume

from .realdata import DEFAULT_FOLDER, SETS, load
from .report import machine, markdown_table, save

# Neighbouring-slice weights a of the kernel [a, 1, a] (normalised): correlation 2a/(1+2a^2).
SLICE_KERNELS = (0.25, 0.5)
DIPY_VOLUMES = ("aniso_vox.nii.gz", "test_piesno.nii.gz")


@dataclasses.dataclass
class NoiseRow:
    case: str
    true_sigma: Optional[float]  # None: unknown (no repeat)
    estimate: float
    across_to_inplane: Optional[float]
    correlated: bool  # what the product concludes

    @property
    def ratio(self) -> Optional[float]:
        return None if self.true_sigma is None else self.estimate / self.true_sigma


def estimate_row(case: str, slices: np.ndarray, true_sigma: Optional[float],
                 magnitude: bool) -> NoiseRow:
    """The estimate as the product makes it: on the normalised stack, back in its units."""
    normalization = Normalization.fit(slices)
    noise = estimate_noise(normalization.apply(slices), BAND_SCALES, magnitude)
    ratio = noise.across_to_inplane
    return NoiseRow(case, None if true_sigma is None else float(true_sigma),
                    float(noise.sigma * normalization.scale),
                    None if ratio is None else round(ratio, 3),
                    noise.correlated_across_slices())


def synthetic_rows(seed: int) -> Iterator[NoiseRow]:
    from Testing.simulators.volumes import (add_rician, cases, mri_clean_slab,
                                            shared_across_slices)

    for _, case in cases(("mri1", "mri5", "mri10", "ct1e4", "ct1e6")):
        yield estimate_row(f"synthetic {case.name}", case.noisy, case.sigma,
                           case.modality == "MR")
    clean = mri_clean_slab()
    sigma = 0.05 * float(clean.max())
    margin = (clean.shape[0] + 2,) + clean.shape[1:]
    for kernel in SLICE_KERNELS:
        rho = 2 * kernel / (1 + 2 * kernel ** 2)
        rng = np.random.default_rng(seed)
        real, imaginary = (shared_across_slices(rng.normal(0.0, sigma, margin), kernel)
                           for _ in range(2))
        noisy = np.sqrt((clean + real) ** 2 + imaginary ** 2)
        yield estimate_row(f"MRI 5 %, complex noise correlated {rho:.2f} across slices",
                           noisy.astype(np.float32), sigma, True)
        magnitude = add_rician(clean, sigma, seed)
        padded = np.concatenate([magnitude[:1], magnitude, magnitude[-1:]])
        # In tissue the magnitude's spread is sigma, and the filter keeps it.
        yield estimate_row(f"MRI 5 %, magnitude resampled ({rho:.2f} across slices)",
                           shared_across_slices(padded, kernel).astype(np.float32), sigma,
                           True)


def real_rows(folder: Path) -> Iterator[NoiseRow]:
    for spec in SETS:
        volume, scored = load(folder, spec)
        yield estimate_row(f"real {spec.name}", volume.array.astype(np.float32),
                           scored.sigma, True)


def dipy_rows() -> Iterator[NoiseRow]:
    try:
        import dipy.data
    except ImportError:
        return
    files = Path(dipy.data.__file__).parent / "files"
    for name in DIPY_VOLUMES:
        if (files / name).exists():
            array = read_volume(files / name).array.astype(np.float32)
            yield estimate_row(f"real, dipy's {name} (no repeat)", array, None, True)


def table(rows: List[NoiseRow]) -> str:
    def number(value: Optional[float], digits: int) -> str:
        return "–" if value is None else f"{value:.{digits}g}"

    return markdown_table(
        ("case", "σ (truth or repeat pair)", "estimate", "estimate / σ",
         "across / in-plane", f"correlated across slices (< {ACROSS_SLICE_RATIO})"),
        ((r.case, number(r.true_sigma, 4), number(r.estimate, 4),
          "–" if r.ratio is None else f"{r.ratio:.2f}",
          "–" if r.across_to_inplane is None else f"{r.across_to_inplane:.2f}",
          "yes" if r.correlated else "no") for r in rows))


def run(args) -> int:
    started = time.perf_counter()
    folder = Path(args.data) if args.data else DEFAULT_FOLDER
    rows: List[NoiseRow] = []
    sources: Tuple[Iterator[NoiseRow], ...] = (synthetic_rows(args.seed), real_rows(folder),
                                               dipy_rows())
    for source in sources:
        for row in source:
            rows.append(row)
            print(f"{row.case:60s} estimate {row.estimate:.4g}  true {row.true_sigma}  "
                  f"across/in-plane {row.across_to_inplane}", flush=True)
    text = (f"{table(rows)}\n\nMachine: {machine()}. Seed {args.seed}; "
            f"`python -m benchmarks noise`; {(time.perf_counter() - started):.0f} s.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save(out, "noise", text, rows, args.docs)
    return 0
