"""NSN2NDenoise engine: self-supervised denoising of one medical image volume.

Pure Python on torch, numpy and SimpleITK; it never imports ``slicer`` or ``qt``.
Importing the package does no work; the entry points live in their modules::

    from nsn2n.volume import read_volume, write_volume
    from nsn2n.pipeline import DenoiseOptions, denoise
"""

__version__ = "0.1.0"
