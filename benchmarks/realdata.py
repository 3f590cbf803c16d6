"""``python -m benchmarks real``: the product and the filters a user has, on real
acquisitions that have a reference made from repeated volumes of the same anatomy.

The sets come from a folder laid out as ``shared/realdata`` (its README gives provenance,
licences and the scoring recipe): for each set an input volume, a reference (the mean of
other repeats of the same kind) and one independent repeat.  Scoring, the same for every
method, inside a head mask (reference above 15 % of its 99.9th percentile, opened, holes
filled):

* PSNR and SSIM against the reference (data range: the reference's 99.9th percentile in
  the mask).  The reference still holds noise and real differences from the input (motion,
  pulsation, drift), so absolute figures are capped; the ranking and the sign of
  output - input are what matter;
* PSNR against the independent repeat (the Noise2Noise argument: MSE to the repeat is the
  MSE to the truth plus sigma^2 plus the differences between the acquisitions, the same
  for every method) and the estimated true PSNR, from MSE - sigma^2, sigma from the pair:
  1.4826 MAD(input - repeat) / sqrt(2);
* method noise: the residual input - output, its rms against the noise, and the share of
  its variance explained by the output's structure (Laplacians at three scales, the
  signature of removed anatomy; ``nsn2n.metrics.structure_in_residual``).

Filters get either the sigma measured from the pair (an oracle no user has) or their own
blind estimate (scikit-image's ``estimate_sigma``, the field's standard wavelet estimator).

The series section scores the series method without leakage (the folder README's recipe):
ASL volume 48 denoised from volumes 0-49 (one kind every second volume), scored against
the mean of the 10 same-kind volumes 52-70 and against volume 50 as the repeat; beside it
the field's multi-volume methods (dipy's Patch2Self and MP-PCA) and the plain mean of the
5 same-kind volumes up to 48.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np

from nsn2n import metrics
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.preview import montage, write_png
from nsn2n.volume import Volume, read_volume

from . import baselines
from .report import machine, markdown_table, save

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@dataclasses.dataclass(frozen=True)
class RealSet:
    """One real acquisition: the file to denoise, its reference and an independent repeat."""

    name: str
    input: str
    reference: str
    repeat: str


SETS = (
    RealSet("ASL vol 50 (6 mm slices)", "asl_vol050.nii.gz", "asl_vol050_reference.nii.gz",
            "asl_vol052.nii.gz"),
    RealSet("DWI b0 r1 (2 mm)", "dwi_b0_r1.nii.gz", "dwi_b0_r1_reference.nii.gz",
            "dwi_b0_r2.nii.gz"),
)


@dataclasses.dataclass
class RealRow:
    set: str
    method: str
    psnr_ref: float
    ssim_ref: float
    psnr_repeat: float
    psnr_true: float
    residual_rms: float  # of input - output in the mask, in units of the pair's sigma
    structure: float  # share of the residual explained by the output's structure
    seconds: float
    note: str = ""


def head_mask(reference: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    mask = reference > 0.15 * np.percentile(reference, 99.9)
    mask = ndimage.binary_opening(mask, iterations=1)
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


def pair_sigma(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> float:
    """Noise sigma from two independent repeats (robust, so motion at edges counts little)."""
    difference = (first.astype(np.float64) - second)[mask]
    return float(1.4826 * np.median(np.abs(difference - np.median(difference))) / np.sqrt(2))


@dataclasses.dataclass
class Scored:
    noisy: np.ndarray
    reference: np.ndarray
    repeat: np.ndarray
    mask: np.ndarray
    sigma: float
    data_range: float

    @classmethod
    def of(cls, noisy: np.ndarray, reference: np.ndarray, repeat: np.ndarray) -> "Scored":
        """Scoring inside the reference's head mask, sigma from the pair, the range the
        reference's 99.9th percentile there."""
        mask = head_mask(reference)
        return cls(noisy, reference, repeat, mask, pair_sigma(noisy, repeat, mask),
                   float(np.percentile(reference[mask], 99.9)))

    def row(self, name: str, method: str, output: np.ndarray, seconds: float,
            note: str = "") -> RealRow:
        output = output.astype(np.float64)
        m = self.mask
        to_repeat = float(np.mean((output[m] - self.repeat[m]) ** 2))
        true_mse = max(to_repeat - self.sigma ** 2, 1e-12)
        residual = self.noisy - output
        return RealRow(
            name, method, metrics.psnr(output, self.reference, m, self.data_range),
            metrics.ssim(output, self.reference, self.data_range),
            10 * np.log10(self.data_range ** 2 / to_repeat),
            10 * np.log10(self.data_range ** 2 / true_mse),
            float(np.sqrt(np.mean(residual[m] ** 2))) / self.sigma,
            metrics.structure_in_residual(residual, output, m), seconds, note)


def load(folder: Path, spec: RealSet) -> Tuple[Volume, Scored]:
    volume = read_volume(folder / spec.input)
    reference = read_volume(folder / spec.reference).array.astype(np.float64)
    repeat = read_volume(folder / spec.repeat).array.astype(np.float64)
    return volume, Scored.of(volume.array.astype(np.float64), reference, repeat)


def blind_sigma(noisy: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma

    return float(np.mean([estimate_sigma(s) for s in noisy]))


def timed(run: Callable[[], np.ndarray]) -> Tuple[np.ndarray, float]:
    started = time.perf_counter()
    out = run()
    return out, time.perf_counter() - started


def classical_rows(spec: RealSet, volume: Volume, scored: Scored, with_bm4d: bool,
                   log) -> List[RealRow]:
    noisy, spacing = scored.noisy, volume.geometry.spacing
    blind = blind_sigma(noisy)
    runs: List[Tuple[str, Callable[[], np.ndarray], str]] = [
        ("curvature anisotropic diffusion, 5 it. (Slicer's one click)",
         lambda: baselines.curvature_anisotropic_diffusion(noisy, spacing, 1.0, 5, 0.0625),
         "conductance 1, time step 0.0625 (Slicer's defaults)"),
        ("Gaussian blur, 0.5 voxel", lambda: baselines.gaussian(noisy, 0.5), "")]
    for label, sigma in (("pair sigma (oracle)", scored.sigma), ("blind sigma", blind)):
        runs.append((f"non-local means, {label}",
                     lambda s=sigma: baselines.non_local_means(noisy, s, 0.8),
                     f"sigma {sigma:.1f}, h = 0.8 sigma"))
        if with_bm4d:
            runs.append((f"BM4D, {label}", lambda s=sigma: baselines.bm4d(noisy, s),
                         f"sigma {sigma:.1f}"))
    rows = []
    for method, run, note in runs:
        out, seconds = timed(run)
        rows.append(scored.row(spec.name, method, out, seconds, note))
        log(rows[-1])
    return rows


def product_rows(spec: RealSet, volume: Volume, scored: Scored, presets: List[str],
                 seed: int, log, out: Path) -> List[RealRow]:
    rows = []
    for preset in presets:
        started = time.perf_counter()
        result, report = denoise(volume, DenoiseOptions(preset=preset, seed=seed))
        seconds = time.perf_counter() - started
        estimate = getattr(report, "noise_sigma", None)
        note = f"{report.steps} steps" + (f", noise estimate {estimate:.1f} "
                                          f"({estimate / scored.sigma:.2f} x the pair's)"
                                          if estimate else "")
        rows.append(scored.row(spec.name, f"NS-N2N `{preset}`", result.array, seconds, note))
        log(rows[-1])
        if preset == presets[-1]:
            stem = spec.input.split(".")[0]
            write_png(out / f"real_{stem}.png", montage(scored.noisy, result.array))
    return rows


SERIES_FILE = "asl_series.nii.gz"
SERIES_TEST, SERIES_USED, SERIES_STRIDE = 48, 50, 2  # denoise 48 from volumes 0-49
SERIES_REFERENCE = slice(52, 71, 2)
SERIES_REPEAT = 50


def series_rows(folder: Path, presets: List[str], seed: int, with_filters: bool,
                log) -> List[RealRow]:
    series = read_volume(folder / SERIES_FILE)
    values = series.array.astype(np.float64)
    noisy = values[SERIES_TEST]
    scored = Scored.of(noisy, values[SERIES_REFERENCE].mean(0), values[SERIES_REPEAT])
    name = f"ASL series: vol {SERIES_TEST} from vols 0-{SERIES_USED - 1}"
    used = values[:SERIES_USED]
    as_dipy = np.ascontiguousarray(np.moveaxis(used, 0, -1))  # (k, j, i, t)

    def patch2self() -> np.ndarray:
        from dipy.denoise.patch2self import patch2self as run

        out = run(as_dipy, np.zeros(SERIES_USED), model="ols", b0_threshold=50,
                  shift_intensity=True, clip_negative_vals=False)
        return out[..., SERIES_TEST]

    def mppca() -> np.ndarray:
        from dipy.denoise.localpca import mppca as run

        return run(as_dipy, patch_radius=2, suppress_warning=True)[..., SERIES_TEST]

    rows = [scored.row(name, "input (untouched)", noisy, 0.0,
                       f"pair sigma {scored.sigma:.1f} (vol {SERIES_REPEAT})")]
    log(rows[-1])
    same_kind = values[SERIES_TEST - 4 * SERIES_STRIDE:SERIES_TEST + 1:SERIES_STRIDE]
    runs = [("mean of the 5 same-kind volumes up to it", lambda: same_kind.mean(0),
             "keeps nothing of its own volume"),
            ("dipy Patch2Self (OLS)", patch2self, "all 50 volumes"),
            ("dipy MP-PCA, patch radius 2", mppca, "all 50 volumes")]
    for method, run, note in runs if with_filters else runs[:1]:
        out, seconds = timed(run)
        rows.append(scored.row(name, method, out, seconds, note))
        log(rows[-1])
    subset = Volume(values[:SERIES_USED].astype(series.array.dtype), series.geometry,
                    series.modality, series.dimension, series.frames)
    for preset in presets:
        started = time.perf_counter()
        result, report = denoise(subset, DenoiseOptions(method="series", preset=preset,
                                                        seed=seed,
                                                        series_stride=SERIES_STRIDE))
        rows.append(scored.row(name, f"series `{preset}`", result.array[SERIES_TEST],
                               time.perf_counter() - started,
                               f"{report.steps} steps, noise estimate "
                               f"{report.noise_sigma:.1f} "
                               f"({report.noise_sigma / scored.sigma:.2f} x the pair's)"))
        log(rows[-1])
    return rows


def table(rows: List[RealRow]) -> str:
    return markdown_table(
        ("set", "method", "PSNR vs reference (dB)", "SSIM vs reference",
         "PSNR vs repeat (dB)", "est. true PSNR (dB)", "residual rms / sigma",
         "structure in residual", "time (s)", "notes"),
        # Four decimals: on the 6 mm ASL volume the product and blind BM4D differ by 0.002 dB.
        ((r.set, r.method, f"{r.psnr_ref:.4f}", f"{r.ssim_ref:.4f}", f"{r.psnr_repeat:.2f}",
          f"{r.psnr_true:.2f}", f"{r.residual_rms:.2f}", f"{r.structure:.3f}",
          f"{r.seconds:.1f}", r.note) for r in rows))


def run(args) -> int:
    def log(row: RealRow) -> None:
        print(f"{row.set:26s} {row.method:58s} ref {row.psnr_ref:8.4f}  ssim {row.ssim_ref:.4f}"
              f"  true {row.psnr_true:6.2f}  resid {row.residual_rms:5.2f}  structure "
              f"{row.structure:.3f}  {row.seconds:6.1f}s  {row.note}", flush=True)

    started = time.perf_counter()
    folder = Path(args.data) if args.data else DEFAULT_FOLDER
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: List[RealRow] = []
    for spec in SETS:
        volume, scored = load(folder, spec)
        print(f"{spec.name}: noise sigma from the pair {scored.sigma:.2f}", flush=True)
        rows.append(scored.row(spec.name, "input (untouched)", scored.noisy, 0.0,
                               f"pair sigma {scored.sigma:.1f}"))
        log(rows[-1])
        if not args.product_only:
            rows += classical_rows(spec, volume, scored, not args.no_bm4d, log)
        rows += product_rows(spec, volume, scored, args.presets.split(","), args.seed, log,
                             out)
    if not args.no_series:
        rows += series_rows(folder, args.presets.split(","), args.seed,
                            not args.product_only, log)
    text = (f"{table(rows)}\n\nMachine: {machine()}. Whole run: "
            f"{(time.perf_counter() - started) / 60:.0f} min.")
    save(out, "real", text, rows, args.docs)
    return 0
