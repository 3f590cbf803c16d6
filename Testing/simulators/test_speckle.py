import numpy as np

from Testing.simulators.speckle import random_echogenicity, random_frame


def test_random_frames_are_reproducible_b_mode_images_in_range():
    a = random_frame(np.random.default_rng(3), 64)
    b = random_frame(np.random.default_rng(3), 64)
    c = random_frame(np.random.default_rng(4), 64)
    assert a.shape == (64, 64) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.02


def test_random_frames_differ_in_anatomy_and_settings():
    rng = np.random.default_rng(0)
    maps = [random_echogenicity(rng, 64) for _ in range(6)]
    assert len({round(float(m.mean()), 3) for m in maps}) == 6
    frames = [random_frame(rng, 64) for _ in range(6)]
    assert np.ptp([f.mean() for f in frames]) > 0.05  # gray levels differ
