"""The bad-input matrix: every case through the library, the command and the Slicer logic.

Each case ends either in a correct result (the input's shape, pixel type and geometry,
exactly) or in one line naming the problem, with no traceback, nothing written beside
the output and the input file unchanged.  File cases (missing, truncated, misnamed...)
do not reach the Slicer logic, which gets nodes Slicer has loaded: its column is the
voxel and geometry cases.
"""

import hashlib
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

import nsn2n.pipeline
from nsn2n.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main
from nsn2n.errors import InputError, OutputError
from nsn2n.files import denoise_file
from nsn2n.options import DenoiseOptions
from nsn2n.volume import read_volume

OPTIONS = dict(steps=4, preset="fast", device="cpu", seed=0)
COMMAND_OPTIONS = ["--steps", "4", "--preset", "fast", "--device", "cpu", "--progress", "none"]
OK = None  # the expected message of a case that must denoise


def anatomy(shape=(6, 20, 20), dtype=np.float32, seed=0):
    """A bright square in a noisy background: something to denoise."""
    rng = np.random.default_rng(seed)
    array = rng.normal(100, 10, shape)
    array[..., 5:15, 5:15] += 200
    return array.astype(dtype)


def image(array, spacing=None, direction=None, vector=False):
    result = sitk.GetImageFromArray(array, isVector=vector)
    if spacing:
        result.SetSpacing(spacing)
    if direction:
        result.SetDirection(direction)
    return result


def saved(folder, name, picture):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(picture, str(path))
    return path


def cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])
    return path


def nonfinite(value):
    array = anatomy()
    array[2, 3, 4] = value
    array[1, 1, 1] = -value if value == np.inf else value
    return array


def labels():
    array = np.zeros((6, 20, 20), np.uint8)
    array[:, 5:15, 5:15] = 1
    array[:, 8:12, 8:12] = 2
    return array


def extremes():
    int32 = np.iinfo(np.int32)
    offsets = (1000 * np.abs(anatomy())).astype(np.int64)
    return np.where(anatomy() > 200, int32.max, int32.min + offsets).astype(np.int32)


SHEARED = (1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
LEFT_HANDED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

# name: (what the file is, what must happen: None denoises, else a piece of the message)
FILE_CASES = {
    "missing": (lambda d: d / "missing.nrrd", "not found"),
    "empty": (lambda d: cut(saved(d, "e.nrrd", image(anatomy())), lambda n: 0), "empty"),
    "truncated nrrd": (lambda d: cut(saved(d, "t.nrrd", image(anatomy())), lambda n: n // 2),
                       "cannot read"),
    "truncated nii": (lambda d: cut(saved(d, "t.nii", image(anatomy(dtype=np.int16))),
                                    lambda n: n - 50), "truncated"),
    "truncated nii.gz": (lambda d: cut(saved(d, "t.nii.gz", image(anatomy())),
                                       lambda n: n - 40), "truncated"),
    "truncated mha": (lambda d: cut(saved(d, "t.mha", image(anatomy())), lambda n: n - 100),
                      "cannot read"),
    "corrupted": (lambda d: _corrupt(saved(d, "c.nii", image(anatomy()))), "cannot read"),
    "wrong extension": (lambda d: shutil.move(saved(d, "n.nrrd", image(anatomy())),
                                              d / "n.nii"), "holds a NRRD image"),
    "no image extension": (lambda d: shutil.move(saved(d, "m.mha", image(anatomy())),
                                                 d / "m.txt"), "rename it to end in .mha"),
    "2-D": (lambda d: saved(d, "2d.nrrd", image(anatomy()[0])), "2-D"),
    "1 slice": (lambda d: saved(d, "1.nrrd", image(anatomy()[:1])), "2-D"),
    "2 slices": (lambda d: saved(d, "2.nrrd", image(anatomy()[:2])), "at least 3"),
    "4-D series": (lambda d: saved(d, "4d.nii", sitk.JoinSeries([image(anatomy(seed=s))
                                                                for s in range(3)])), OK),
    "RGB volume": (lambda d: saved(d, "rgb.nrrd", image(
        np.repeat(anatomy()[..., None], 3, -1).clip(0, 255).astype(np.uint8), vector=True)),
        "components"),
    "2-component": (lambda d: saved(d, "v.nrrd", image(
        np.repeat(anatomy()[..., None], 2, -1), vector=True)), "components"),
    "constant": (lambda d: saved(d, "k.nrrd", image(np.full((6, 20, 20), 7, np.int16))),
                 "constant"),
    "all zero": (lambda d: saved(d, "z.nrrd", image(np.zeros((6, 20, 20), np.uint8))),
                 "constant"),
    "NaN": (lambda d: saved(d, "nan.nrrd", image(nonfinite(np.nan))), "NaN"),
    "NaN in NIfTI": (lambda d: saved(d, "nan.nii.gz", image(nonfinite(np.nan))), "NaN"),
    "+-inf": (lambda d: saved(d, "inf.mha", image(nonfinite(np.inf))), "infinite"),
    "int32 extremes": (lambda d: saved(d, "i32.nrrd", image(extremes())), OK),
    "float64 1e30": (lambda d: saved(d, "f64.nrrd", image(anatomy(dtype=np.float64) * 1e28)),
                     OK),
    "tiny 3x3x3": (lambda d: saved(d, "tiny.nrrd", image(anatomy((3, 3, 3)))), "too small"),
    "anisotropic 0.3x0.3x10": (lambda d: saved(d, "a.nrrd", image(anatomy(),
                                                                  (0.3, 0.3, 10.0))), OK),
    "label map": (lambda d: saved(d, "seg.nrrd", image(labels())), "label map"),
    "left-handed": (lambda d: saved(d, "lh.nrrd", image(anatomy(), direction=LEFT_HANDED)),
                    OK),
    "sheared (non-orthogonal)": (lambda d: saved(d, "sh.nrrd", image(
        anatomy(), (0.9, 0.9, 3.0), direction=SHEARED)), OK),  # a gantry tilt
    "unicode and spaces": (lambda d: saved(d, "dössier ünï 体积/my scan.nrrd",
                                           image(anatomy())), OK),
}


def _corrupt(path):
    data = bytearray(path.read_bytes())
    data[40:56] = b"\x7f" * 16  # the dimensions of the header
    path.write_bytes(bytes(data))
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def outcome_folder(tmp_path):
    folder = tmp_path / "résultats été"
    folder.mkdir()
    return folder


def assert_denoised_like(source, output):
    before, after = read_volume(source), read_volume(output)
    assert after.array.shape == before.array.shape
    assert after.array.dtype == before.array.dtype
    if output.name.endswith((".nii", ".nii.gz")):  # NIfTI stores its geometry as float32
        for name in ("spacing", "origin", "direction"):
            np.testing.assert_allclose(getattr(after.geometry, name),
                                       getattr(before.geometry, name), rtol=1e-6, atol=1e-6)
    else:
        assert after.geometry == before.geometry  # exactly: spacing, origin, direction
    assert after.dimension == before.dimension and after.frames == before.frames
    assert np.isfinite(after.array.astype(np.float64)).all()
    if before.array.dtype.kind in "iu":
        info = np.iinfo(before.array.dtype)
        assert info.min <= after.array.min() and after.array.max() <= info.max
    else:  # no overflow for values near the type's range
        assert np.abs(after.array).max() <= 4 * np.abs(before.array).max()


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_library(tmp_path, case):
    make, message = FILE_CASES[case]
    source = make(tmp_path / "in")
    before = digest(source)
    out = outcome_folder(tmp_path) / "out.nrrd"
    if message is OK:
        denoise_file(source, out, DenoiseOptions(**OPTIONS))
        assert_denoised_like(source, out)
    else:
        with pytest.raises(InputError) as info:
            denoise_file(source, out, DenoiseOptions(**OPTIONS))
        assert message in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in out.parent.iterdir()) == (["out.nrrd"] if message is OK
                                                            else [])
    assert digest(source) == before


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_command(tmp_path, case, capfd):
    make, message = FILE_CASES[case]
    source = make(tmp_path / "in")
    before = digest(source)
    out = outcome_folder(tmp_path) / "sortie débruitée.nii.gz"
    code = main(["denoise", str(source), str(out)] + COMMAND_OPTIONS)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    if message is OK and case != "sheared (non-orthogonal)":
        assert code == EXIT_OK, err
        assert_denoised_like(source, out)
        assert [p.name for p in out.parent.iterdir()] == [out.name]
    else:
        expected = message or "NIfTI cannot hold"  # a sheared volume, asked for in NIfTI
        assert code == EXIT_BAD_INPUT and len(lines) == 1 and expected in lines[0], err
        assert list(out.parent.iterdir()) == []
    assert digest(source) == before


# The voxel and geometry cases as nodes (what Slicer has loaded): (array, IJK-to-RAS
# directions or None for the helpers' oblique one, expected message or OK)
NODE_CASES = {
    "1 slice": (anatomy()[:1], None, "2-D"),
    "2 slices": (anatomy()[:2], None, "at least 3"),
    "constant": (np.full((6, 20, 20), 7, np.int16), None, "constant"),
    "NaN": (nonfinite(np.nan), None, "NaN"),
    "+-inf": (nonfinite(np.inf), None, "infinite"),
    "int32 extremes": (extremes(), None, OK),
    "float64 1e30": (anatomy(dtype=np.float64) * 1e28, None, OK),
    "tiny 3x3x3": (anatomy((3, 3, 3)), None, "too small"),
    "label values in a scalar node": (labels(), None, "label map"),
    "left-handed": (anatomy(), LEFT_HANDED, OK),
    "sheared (non-orthogonal)": (anatomy(), SHEARED, OK),
}


@pytest.mark.parametrize("case", list(NODE_CASES))
def test_slicer_logic(case):
    mrml = pytest.importorskip("Testing.NSN2NDenoise.mrml_helpers")
    from NSN2NDenoiseLib.logic import NSN2NDenoiseLogic

    array, directions, message = NODE_CASES[case]
    scene = mrml.slicer.vtkMRMLScene()
    node = mrml.add_volume(scene, array)
    if directions is not None:
        import vtk

        matrix = vtk.vtkMatrix4x4()
        for index, value in enumerate(directions):
            matrix.SetElement(index // 3, index % 3, value)
        node.SetIJKToRASDirectionMatrix(matrix)
    matrix = _ijk_to_ras(node)
    count = scene.GetNumberOfNodes()
    if message is OK:
        output = NSN2NDenoiseLogic().process(node, **OPTIONS)
        np.testing.assert_array_equal(_ijk_to_ras(output), matrix)
        result = mrml.slicer.util.arrayFromVolume(output)
        assert result.shape == array.shape and result.dtype == array.dtype
        assert np.isfinite(result.astype(np.float64)).all()
    else:
        with pytest.raises(InputError) as info:
            NSN2NDenoiseLogic().process(node, **OPTIONS)
        assert message in str(info.value) and "\n" not in str(info.value)
        assert scene.GetNumberOfNodes() == count
    np.testing.assert_array_equal(mrml.slicer.util.arrayFromVolume(node), array)
    np.testing.assert_array_equal(_ijk_to_ras(node), matrix)


def _ijk_to_ras(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


# Faults of the output side, through the library and the command.

def fail_midway(monkeypatch, error):
    """SimpleITK writes half the file, then fails as a full disk makes it fail."""
    real = sitk.WriteImage

    def write(picture, path, *args, **kwargs):
        real(picture, path, *args, **kwargs)
        with open(path, "r+b") as stream:
            stream.truncate(10)
        raise error

    monkeypatch.setattr(sitk, "WriteImage", write)


@pytest.mark.parametrize("error, reason", [
    (RuntimeError("Exception thrown in SimpleITK WriteImage: itkNrrdImageIO.cxx:1087:\n"
                  "ITK ERROR: NrrdImageIO: Write: Error writing x.nrrd: No space left on "
                  "device"), "No space left on device"),
    (OSError(28, "No space left on device"), "No space left on device"),
])
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capfd, error,
                                                    reason):
    source = saved(tmp_path / "in", "a.nrrd", image(anatomy()))
    out = outcome_folder(tmp_path) / "out.nrrd"
    fail_midway(monkeypatch, error)
    with pytest.raises(OutputError, match=reason):
        denoise_file(source, out, DenoiseOptions(**OPTIONS))
    assert list(out.parent.iterdir()) == []
    assert main(["denoise", str(source), str(out)] + COMMAND_OPTIONS) == EXIT_FAILED
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0] and lines[0].startswith("nsn2n: error:")
    assert list(out.parent.iterdir()) == []


def test_an_output_folder_removed_during_the_run_is_one_line(tmp_path, monkeypatch, capfd):
    source = saved(tmp_path / "in", "a.nrrd", image(anatomy()))
    folder = outcome_folder(tmp_path)
    real = nsn2n.pipeline.denoise

    def denoise_then_lose_the_folder(*args, **kwargs):
        result = real(*args, **kwargs)
        shutil.rmtree(folder)
        return result

    monkeypatch.setattr(nsn2n.pipeline, "denoise", denoise_then_lose_the_folder)
    code = main(["denoise", str(source), str(folder / "out.nrrd")] + COMMAND_OPTIONS)
    lines = capfd.readouterr().err.strip().splitlines()
    assert code == EXIT_FAILED and len(lines) == 1 and "folder does not exist" in lines[0]
    assert not folder.exists()


def test_an_unexpected_error_is_one_line_unless_the_traceback_is_asked_for(
        tmp_path, monkeypatch, capfd):
    source = saved(tmp_path / "in", "a.nrrd", image(anatomy()))
    out = tmp_path / "out.nrrd"

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(nsn2n.pipeline, "denoise", broken)
    assert main(["denoise", str(source), str(out)] + COMMAND_OPTIONS) == EXIT_FAILED
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "unexpected ZeroDivisionError: a bug" in err
    monkeypatch.setenv("NSN2N_TRACEBACK", "1")
    with pytest.raises(ZeroDivisionError):
        main(["denoise", str(source), str(out)] + COMMAND_OPTIONS)
    assert not out.exists()
