"""The project's benchmarks: not part of the engine package or the Slicer extension.

Run from the repository root after ``pip install -e ".[bench]"``::

    python -m benchmarks --help

Each subcommand prints a table, keeps it (and its rows as JSON) under ``--out`` and, with
``--docs``, writes it into its marked section of ``docs/benchmarks.md``.  The simulated
volumes come from ``Testing/simulators``, shared with the tests.
"""
