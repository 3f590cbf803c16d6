import pickle

import numpy as np
import pytest
import torch

from nsn2n.checkpoint import load_network, save_network
from nsn2n.errors import InputError
from nsn2n.methods.nsn2n.config import NSN2NConfig
from nsn2n.nets import UNet2d
from nsn2n.options import DenoiseOptions
from nsn2n.pipeline import denoise
from nsn2n.volume import Geometry, Volume
from Testing.helpers import smooth_phantom


def noisy_volume(seed):
    rng = np.random.default_rng(seed)
    clean = smooth_phantom((8, 32, 32), seed)
    return Volume((clean + rng.normal(0, 0.08, clean.shape)).astype(np.float32),
                  Geometry.identity((1.0, 1.0, 3.0)), "CT")


def test_a_saved_network_loads_as_it_was_and_only_into_its_shape(tmp_path):
    torch.manual_seed(0)
    model = UNet2d(12, 3)
    path = save_network(tmp_path / "net.pt", model, NSN2NConfig(), {"noise_sigma": 0.1})
    state = load_network(path, 12, 3)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]  # no staging left behind
    with pytest.raises(InputError, match="width 12 and depth 3; this run needs 16 and 3"):
        load_network(path, 16, 3)
    with pytest.raises(InputError, match="not found"):
        load_network(tmp_path / "missing.pt", 12, 3)
    torch.save({"some": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a network saved by nsn2n"):
        load_network(tmp_path / "other.pt", 12, 3)


class Payload:
    def __reduce__(self):  # what a malicious file would run when unpickled
        return (print, ("code from the file ran",))


def test_a_file_that_would_run_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"kind": "nsn2n-network", "payload": Payload()}, path)
    with pytest.raises(InputError, match="cannot read the saved network"):
        load_network(path, 12, 3)
    assert "code from the file ran" not in capsys.readouterr().out
    (tmp_path / "junk.pt").write_bytes(pickle.dumps("junk"))
    with pytest.raises(InputError, match="cannot read"):
        load_network(tmp_path / "junk.pt", 12, 3)


def test_train_once_then_fine_tune_another_volume_of_the_protocol(tmp_path):
    path = str(tmp_path / "protocol.pt")
    _, first = denoise(noisy_volume(0), DenoiseOptions(steps=6, seed=1, save_model=path))
    assert first.steps == 6 and (tmp_path / "protocol.pt").is_file()
    other = noisy_volume(1)
    _, tuned = denoise(other, DenoiseOptions(preset="fast", seed=1, model=path))
    assert tuned.steps == 28  # a quarter of fast's 450, then of a small volume's share
    from_saved, _ = denoise(other, DenoiseOptions(steps=1, seed=1, model=path))
    from_scratch, _ = denoise(other, DenoiseOptions(steps=1, seed=1))
    assert not np.array_equal(from_saved.array, from_scratch.array)
    again, _ = denoise(other, DenoiseOptions(steps=1, seed=1, model=path))
    assert np.array_equal(again.array, from_saved.array)  # reproducible


def test_saved_networks_are_refused_where_they_do_not_apply(tmp_path):
    with pytest.raises(InputError, match=r"\.pt file"):
        DenoiseOptions(model="net.pth")
    ultrasound = Volume(np.random.default_rng(0).random((2, 32, 32)).astype(np.float32),
                        Geometry.identity(), "US")
    with pytest.raises(InputError, match="speckle2self method"):
        denoise(ultrasound, DenoiseOptions(save_model=str(tmp_path / "n.pt"), steps=1))
