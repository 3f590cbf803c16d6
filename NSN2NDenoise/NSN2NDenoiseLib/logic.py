"""NSN2NDenoiseLogic: a volume node in, a denoised volume node out.

Imports only MRML, ``slicer.util``, the engine and the standard library, so it runs in
Slicer's Python console, in batch scripts and under plain pytest with ``slicer-core``.
"""

from __future__ import annotations

import threading
from typing import Callable, Mapping, Optional

from nsn2n.options import MODALITIES

from .job import EngineRun
from .nodes import volume_from_node, write_output
from .sequences import is_sequence, volume_from_sequence, write_output_sequence

# The parameter node's fields that are DenoiseOptions fields of the same name.
PANEL_OPTIONS = ("method", "preset", "steps", "seed", "slice_axis", "bias_correction",
                 "noise_sigma")


def panel_options(parameters, device: Optional[str]):
    """The options the panel's parameter node holds; its spin boxes show 0 as "from preset"
    (``steps`` None) and "estimate" (``noise_sigma`` None)."""
    from nsn2n.options import DenoiseOptions

    values = {name: getattr(parameters, name) for name in PANEL_OPTIONS}
    values["steps"] = values["steps"] or None
    values["noise_sigma"] = values["noise_sigma"] or None
    return DenoiseOptions(device=device or "auto", **values)


def engine_options(options=None, **values):
    """``options`` (a ``DenoiseOptions``) with ``values`` (its field names) replaced, or
    built from ``values`` alone."""
    import dataclasses

    from nsn2n.errors import InputError
    from nsn2n.options import DenoiseOptions

    names = {field.name for field in dataclasses.fields(DenoiseOptions)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"Unknown option(s): {', '.join(sorted(unknown))}; use "
                         + ", ".join(sorted(names)) + ".")
    return dataclasses.replace(options, **values) if options else DenoiseOptions(**values)


class NSN2NDenoiseLogic:
    """Denoise volume nodes (scalar or RGB) and sequences of volumes or frames with the
    NSN2NDenoise engine (a sequence gives a new sequence: ``sequences.py``).

    Batch use from the Python console::

        logic = NSN2NDenoiseLogic()
        for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            logic.process(node, preset="fast", seed=0)

    Options are the fields of ``nsn2n.options.DenoiseOptions`` (``preset``, ``device``,
    ``precision``, ``seed``, ``slice_axis``, ``method``, ``bias_correction``, ``steps``,
    ``max_minutes``, ``modality``), given as keywords or as ``options=``.
    """

    def __init__(self, environment: Optional[Mapping[str, str]] = None):
        self.job: Optional[EngineRun] = None
        self.lastReport = None  # the RunReport of the last finished run
        # The environment of the engine's process; None: this process's.  Inside Slicer
        # the widget passes slicer.util.startupEnvironment(), which PythonSlicer expects.
        self.environment = environment

    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.finished

    def process(self, inputVolume, outputVolume=None, *, waitForCompletion: bool = True,
                progressCallback: Optional[Callable] = None,
                onFinished: Optional[Callable] = None, onError: Optional[Callable] = None,
                onCancelled: Optional[Callable] = None,
                cancelEvent: Optional[threading.Event] = None, estimated=None,
                options=None, **values):
        """Denoise ``inputVolume`` into ``outputVolume`` (a new node when None) with
        ``options`` and/or option ``values`` (see the class docstring).

        With ``waitForCompletion=True`` (scripts) this runs here, blocks and returns the
        output node; ``cancelEvent`` stops it, ``estimated`` (the :meth:`estimate` shown
        before) is recorded in the report and makes progress count down the whole run.
        With ``False`` (the panel) the voxels are copied now and the run goes to its own
        process (``job.EngineRun``: a Python thread inside Slicer would share the
        application's interpreter lock); the caller must call :meth:`poll` on the main
        thread until it returns False.  Its first progress has the phase ``estimate``
        (``remaining``: the expected seconds); ``onFinished(outputNode, report)`` then
        delivers the node, and the return value is ``outputVolume`` as given (None when a
        new node will be created).  Nothing is added to or changed in the scene before
        the result is complete, and nothing after a cancel.
        """
        from nsn2n.errors import InputError
        from nsn2n.pipeline import denoise, validate

        if self.busy:
            raise RuntimeError("A denoising run is already in progress; cancel it first.")
        if outputVolume is not None and inputVolume is not None \
                and outputVolume.GetID() == inputVolume.GetID():
            raise InputError("The output volume must differ from the input volume.")
        sequence = is_sequence(inputVolume)
        if sequence and outputVolume is not None:
            raise InputError("A sequence is denoised into a new sequence; leave the output "
                             "volume empty.")
        chosen = engine_options(options, **values)
        validate(chosen)
        # Copied on the calling (main) thread.
        volume = volume_from_sequence(inputVolume) if sequence else volume_from_node(inputVolume)

        def write(array):
            if sequence:
                return write_output_sequence(inputVolume, array)
            return write_output(inputVolume, array, outputVolume)

        if waitForCompletion:
            result, report = denoise(volume, chosen, progressCallback, cancelEvent,
                                     estimated=estimated)
            self.lastReport = report
            return write(result.array)

        if chosen.modality is None and volume.modality in MODALITIES:
            chosen = engine_options(chosen, modality=volume.modality)  # not in the file

        def finished(payload):
            array, report = payload
            try:
                node = write(array)
            except Exception as error:  # the panel must leave its running state
                if onError is None:
                    raise
                onError(error)
                return
            self.lastReport = report
            if onFinished is not None:
                onFinished(node, report)

        self.job = EngineRun(volume, chosen, on_progress=progressCallback, on_done=finished,
                             on_error=onError, on_cancelled=onCancelled,
                             environment=self.environment).start()
        return outputVolume

    def poll(self) -> bool:
        """Deliver the running job's events on this (main) thread; True while it runs."""
        return self.job.poll() if self.job is not None else False

    def cancel(self) -> None:
        """Stop the running job: its process ends within a second; the scene stays as
        it was."""
        if self.job is not None:
            self.job.cancel()

    def cancelAndWait(self, timeout: float = 30.0) -> None:
        """Cancel and wait for the worker (scene close, module reload); discards the result."""
        if self.job is not None:
            self.job.discard(timeout)
            self.job = None

    @staticmethod
    def estimate(inputVolume, options=None, **values):
        """The expected run time (``nsn2n.runtime.Estimate``, per phase; ``.seconds``),
        measured on the device the run will use; takes a second or two."""
        from nsn2n.pipeline import estimate

        volume = (volume_from_sequence(inputVolume) if is_sequence(inputVolume)
                  else volume_from_node(inputVolume))
        return estimate(volume, engine_options(options, **values))

    @staticmethod
    def deviceChoices():
        """(value, label) pairs for the device selector, with GPU names and memory."""
        choices = [("auto", "Automatic"), ("cpu", "CPU")]
        try:
            import torch
        except Exception:  # not installed, or a broken install (missing DLLs): say so on Denoise
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
