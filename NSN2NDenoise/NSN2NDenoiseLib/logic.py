"""NSN2NDenoiseLogic: a volume node in, a denoised volume node out.

Imports only MRML, ``slicer.util``, the engine and the standard library, so it runs in
Slicer's Python console, in batch scripts and under plain pytest with ``slicer-core``.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from .job import DenoiseJob
from .nodes import volume_from_node, write_output

# Keyword names of process() -> DenoiseOptions fields, so console users may write either.
_OPTION_NAMES = {"sliceAxis": "slice_axis", "biasCorrection": "bias_correction",
                 "maxMinutes": "max_minutes", "iterations": "steps"}


def denoise_options(**options):
    """Engine options from ``process()`` keywords (camelCase or snake_case)."""
    from nsn2n.errors import InputError
    from nsn2n.pipeline import DenoiseOptions

    translated = {_OPTION_NAMES.get(key, key): value for key, value in options.items()}
    unknown = set(translated) - set(DenoiseOptions.__dataclass_fields__)
    if unknown:
        raise InputError(f"Unknown option(s): {', '.join(sorted(unknown))}.")
    return DenoiseOptions(**translated)


def panelOptions(method: str, preset: str, device: Optional[str], seed: int, sliceAxis: str,
                 iterations: int, biasCorrection: str) -> dict:
    """``process()`` options from the panel's parameter values (strings from combo boxes)."""
    return dict(method=method, preset=preset, device=device or "auto", seed=seed,
                slice_axis=sliceAxis if sliceAxis == "auto" else int(sliceAxis),
                steps=iterations or None,
                bias_correction={"auto": None, "on": True, "off": False}[biasCorrection])


class NSN2NDenoiseLogic:
    """Denoise scalar volume nodes with the NSN2NDenoise engine.

    Batch use from the Python console::

        logic = NSN2NDenoiseLogic()
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            logic.process(node, preset="fast", seed=0)
    """

    def __init__(self):
        self.job: Optional[DenoiseJob] = None
        self.lastReport: Optional[dict] = None

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.finished

    def process(self, inputVolume, outputVolume=None, *, waitForCompletion: bool = True,
                progressCallback: Optional[Callable] = None,
                onFinished: Optional[Callable] = None, onError: Optional[Callable] = None,
                onCancelled: Optional[Callable] = None,
                cancelEvent: Optional[threading.Event] = None, **options):
        """Denoise ``inputVolume`` into ``outputVolume`` (a new node when None).

        Options are the engine's: ``preset``, ``device``, ``seed``, ``slice_axis``,
        ``method``, ``bias_correction``, ``steps``, ``max_minutes``, ``modality``.

        With ``waitForCompletion=True`` (scripts) this blocks and returns the output node.
        With ``False`` (the panel) the voxels are copied now, training runs on a background
        thread, and the caller must call :meth:`poll` on the main thread until it returns
        False; ``onFinished(outputNode, report)`` then delivers the node, and the return
        value is ``outputVolume`` as given (None when a new node will be created).
        Nothing is added to or changed in the scene before the result is complete.
        """
        from nsn2n.errors import InputError
        from nsn2n.pipeline import denoise

        if self.busy:
            raise RuntimeError("A denoising run is already in progress; cancel it first.")
        if outputVolume is not None and inputVolume is not None \
                and outputVolume.GetID() == inputVolume.GetID():
            raise InputError("The output volume must differ from the input volume.")
        engine_options = denoise_options(**options)
        volume = volume_from_node(inputVolume)  # copied on the calling (main) thread

        def work(progress, cancel):
            return denoise(volume, engine_options, progress, cancel)

        if waitForCompletion:
            result, report = work(progressCallback, cancelEvent)
            self.lastReport = report
            return write_output(inputVolume, result.array, outputVolume)

        def finished(payload):
            result, report = payload
            self.lastReport = report
            node = write_output(inputVolume, result.array, outputVolume)
            if onFinished is not None:
                onFinished(node, report)

        self.job = DenoiseJob(work, on_progress=progressCallback, on_done=finished,
                              on_error=onError, on_cancelled=onCancelled).start()
        return outputVolume

    def poll(self) -> bool:
        """Deliver the running job's events on this (main) thread; True while it runs."""
        return self.job.poll() if self.job is not None else False

    def cancel(self) -> None:
        """Ask the running job to stop; it does within one training iteration."""
        if self.job is not None:
            self.job.cancel()

    def cancelAndWait(self, timeout: float = 30.0) -> None:
        """Cancel and wait for the worker (scene close, module reload); discards the result."""
        if self.job is not None:
            self.job.discard(timeout)
            self.job = None

    @staticmethod
    def estimateSeconds(inputVolume, **options) -> Optional[float]:
        """Expected run time on the CPU, or None when the run will use a GPU."""
        from nsn2n.pipeline import estimate_seconds
        from nsn2n.training import resolve_device

        engine_options = denoise_options(**options)
        if resolve_device(engine_options.device).type != "cpu":
            return None
        return estimate_seconds(volume_from_node(inputVolume), engine_options)

    @staticmethod
    def deviceChoices():
        """(value, label) pairs for the device selector, with GPU names and memory."""
        choices = [("auto", "Automatic"), ("cpu", "CPU")]
        try:
            import torch
        except ImportError:
            return choices
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                properties = torch.cuda.get_device_properties(index)
                choices.append((f"cuda:{index}", f"{properties.name} "
                                f"({properties.total_memory / 2 ** 30:.0f} GB)"))
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            choices.append(("mps", "Apple GPU (MPS)"))
        return choices
