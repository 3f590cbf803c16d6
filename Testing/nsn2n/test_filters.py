import numpy as np
import pytest
import torch

from nsn2n.filters import (box_sum, dct_basis, gaussian_lowpass, mirror_index, padded_index,
                           split_bands, tent_average)
from Testing.helpers import white_noise


def test_lowpass_preserves_constants_and_reduces_noise():
    flat = torch.full((2, 16, 16), 0.7)
    assert torch.allclose(gaussian_lowpass(flat, 2.0), flat, atol=1e-6)
    noise = torch.randn(2, 32, 32, generator=torch.Generator().manual_seed(0))
    assert gaussian_lowpass(noise, 2.0).std() < 0.3 * noise.std()


def test_bands_sum_to_the_input():
    x = torch.from_numpy(white_noise(1.0, (3, 20, 17)))
    bands = split_bands(x, (1.0, 3.0))
    assert len(bands) == 3
    assert torch.allclose(sum(bands), x, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 8])
def test_dct_basis_is_orthonormal(size):
    basis = dct_basis(size)
    assert torch.allclose(basis @ basis.T, torch.eye(size), atol=1e-5)


@pytest.mark.parametrize("length,patch,stride", [(10, 8, 3), (8, 8, 3), (23, 8, 4), (3, 3, 2),
                                                 (1, 1, 3)])
def test_padding_tiles_the_axis_with_mirrored_indices(length, patch, stride):
    index = padded_index(length, patch, stride)
    assert len(index) >= length and (len(index) - patch) % stride == 0
    assert torch.equal(index[:length], torch.arange(length))
    assert int(index.min()) >= 0 and int(index.max()) < length


def test_mirror_index_matches_numpy_reflect_padding():
    expected = np.pad(np.arange(5), 3, mode="reflect")
    assert mirror_index(-3, 8, 5).tolist() == expected.tolist()


def test_box_sum_equals_the_brute_force_sum():
    values = torch.rand(5, 7, 9, generator=torch.Generator().manual_seed(0))
    summed = box_sum(values, (3, 5, 3))
    assert summed.shape == (3, 3, 7)
    assert float(summed[1, 2, 4]) == pytest.approx(float(values[1:4, 2:7, 4:7].sum()), rel=1e-6)


def test_tent_average_is_a_normalised_triangle_and_one_is_the_identity():
    volume = np.random.default_rng(5).random((2, 9, 11)).astype(np.float32)
    assert np.array_equal(tent_average(volume, (1, 1, 1)), volume)
    out = tent_average(volume, (1, 1, 3))  # taps 1, 2, 3, 2, 1 over 9
    expected = (volume[..., 2:7] * np.array([1, 2, 3, 2, 1]) / 9).sum(-1)
    assert out[0, 4, 4] == pytest.approx(float(expected[0, 4]), abs=1e-6)
    assert tent_average(np.ones((1, 5, 5), np.float32), (1, 2, 2)) == pytest.approx(1.0)
