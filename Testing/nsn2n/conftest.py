"""Fixtures of the engine's tests."""

import pytest

from Testing.helpers import write_ct


@pytest.fixture
def cohort(tmp_path):
    """Three volumes in a small tree, one of them unreadable."""
    root = tmp_path / "in"
    write_ct(root / "a.nrrd", 0)
    write_ct(root / "site2" / "b.nii.gz", 1)
    (root / "site2" / "broken.mha").write_bytes(b"not an image")
    (root / "notes.txt").write_text("not a volume")
    return root
