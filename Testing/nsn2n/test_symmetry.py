import pytest
import torch

from nsn2n.symmetry import dihedral, inverse_dihedral


@pytest.mark.parametrize("element", range(8))
def test_dihedral_is_inverted_exactly(element):
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    assert torch.equal(inverse_dihedral(dihedral(x, element), element), x)
