import numpy as np
import pytest
import SimpleITK as sitk

from nsn2n.errors import InputError
from nsn2n.preview import check_png_path, montage, write_png


def test_montage_shows_input_output_and_difference_in_one_window():
    before = np.zeros((5, 10, 12), np.float32)
    before[:, :, 6:] = 100.0
    after = before.copy()
    after[:, 2, 2] = 50.0
    picture = montage(before, after, count=3)
    assert picture.shape == (3 * 10 + 2 * 4, 3 * 12 + 2 * 4)
    left, middle = picture[:10, :12], picture[:10, 16:28]
    assert left[0, 0] == 0 and left[0, 11] == 255 and middle[0, 11] == 255
    difference = picture[:10, 32:]
    assert difference[2, 2] < difference[0, 0] == pytest.approx(127.5)  # mid-gray is zero


def test_png_round_trip(tmp_path):
    gray = (np.arange(20 * 30) % 256).reshape(20, 30).astype(np.uint8)
    path = write_png(tmp_path / "p.png", gray)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), gray)


def test_a_preview_path_is_checked_before_any_work(tmp_path):
    with pytest.raises(InputError, match=".png"):
        check_png_path(tmp_path / "p.jpg")
    with pytest.raises(InputError, match="does not exist"):
        check_png_path(tmp_path / "missing" / "p.png")
