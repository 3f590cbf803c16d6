"""Slicer-side code of the NSN2NDenoise module.

Everything here except ``dependencies`` runs without Qt: ``logic`` and ``nodes`` need only
MRML (the ``slicer-core`` wheel is enough), ``job`` and ``state`` only the standard library.
"""
