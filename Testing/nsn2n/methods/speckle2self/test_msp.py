import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nsn2n.methods.speckle2self.msp import SCALES, augment, minmax_normalize, perturb, random_affines, resample


def images(seed, shape=(3, 1, 32, 48)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 7 - 2


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_perturb_gives_one_full_size_copy_per_scale_each_normalized_alone(seed):
    x = images(seed)
    copies = perturb(x)
    assert copies.shape == (3, len(SCALES), 32, 48)
    flat = copies.flatten(2)
    assert torch.allclose(flat.amin(-1), torch.zeros(3, 3), atol=1e-6)
    assert torch.allclose(flat.amax(-1), torch.ones(3, 3), atol=1e-6)
    assert torch.allclose(copies[:, 0], minmax_normalize(x)[:, 0])  # scale 1 is untouched


def test_resampling_is_bilinear_without_antialiasing():
    # A one-pixel checkerboard aliases to a constant under 0.5x bilinear without
    # anti-aliasing (each output sample falls exactly between two pixels); an area or
    # anti-aliased filter would give the same constant but a Gaussian would not be exact.
    x = torch.zeros(1, 1, 8, 8)
    x[..., ::2, ::2] = 1
    x[..., 1::2, 1::2] = 1
    assert torch.allclose(resample(x, 0.5), torch.full_like(x, 0.5))
    smooth = torch.linspace(0, 1, 16).repeat(16, 1)[None, None]
    assert not torch.equal(resample(smooth, 0.25), smooth)
    assert torch.equal(resample(smooth, 1.0), smooth)


def test_coarser_scales_lose_more_detail():
    x = images(1, (1, 1, 64, 64))
    errors = [float((perturb(x)[0, k] - perturb(x)[0, 0]).abs().mean()) for k in (1, 2)]
    assert 0 < errors[0] < errors[1]


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_augmentation_moves_every_copy_alike(seed):
    rng = np.random.default_rng(seed)
    base = images(seed, (4, 1, 32, 32))
    copies = base.repeat(1, 3, 1, 1)  # three identical channels stay identical
    moved = augment(copies, random_affines(4, rng, p_hflip=0.5, p_vflip=0.5, p_affine=1.0))
    assert torch.allclose(moved[:, 0], moved[:, 1]) and torch.allclose(moved[:, 0], moved[:, 2])
    assert not torch.allclose(moved, copies)


def test_augmentation_is_seeded_and_identity_when_nothing_fires():
    a = random_affines(8, np.random.default_rng(3))
    b = random_affines(8, np.random.default_rng(3))
    assert torch.equal(a, b)
    x = images(0, (2, 3, 16, 16))
    none = random_affines(2, np.random.default_rng(0), p_hflip=0, p_vflip=0, p_affine=0)
    assert torch.equal(augment(x, none), x)


def test_a_pure_flip_is_exact():
    x = images(0, (1, 3, 16, 16))
    flip = random_affines(1, np.random.default_rng(0), p_hflip=1, p_vflip=0, p_affine=0)
    assert torch.allclose(augment(x, flip), x.flip(-1), atol=1e-5)
