import pytest
import torch

from nsn2n.errors import InputError
from nsn2n.methods.speckle2self.net import SpeckleNet
from nsn2n.methods.speckle2self.pretrained import load_weights, save_weights, weights_path

ARCHITECTURE = dict(width=4, levels=2, output_norm="none")


def tiny_net(seed=0):
    torch.manual_seed(seed)
    return SpeckleNet(4, 2, 3, "none")


def test_round_trip_keeps_architecture_provenance_and_weights_to_half_precision(tmp_path):
    model = tiny_net()
    path = save_weights(model, tmp_path / "w.pt", ARCHITECTURE, dict(steps=7))
    state, architecture, provenance = load_weights(path)
    assert architecture == ARCHITECTURE and provenance == dict(steps=7)
    assert not list(tmp_path.glob("*.part"))  # the temporary file is gone
    for key, value in model.state_dict().items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape
        assert torch.allclose(state[key], value, rtol=1e-3, atol=1e-4), key
    reloaded = tiny_net(seed=1)
    reloaded.load_state_dict(state)
    x = torch.rand(1, 1, 16, 16)
    assert torch.allclose(reloaded(x), model(x), atol=1e-2)


def test_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(InputError, match="pretrained weights not found"):
        load_weights(tmp_path / "absent.pt")


def test_the_shipped_speckle2self_weights_are_there_and_fit_the_default_network():
    from nsn2n.methods.speckle2self.config import Speckle2SelfConfig
    from nsn2n.methods.speckle2self.method import architecture, new_model

    state, saved, provenance = load_weights(weights_path())
    config = Speckle2SelfConfig()
    assert saved == architecture(config)
    assert provenance["steps"] >= 1000 and "command" in provenance
    model = new_model(config)  # loads them
    assert torch.equal(model.state_dict()["decoder.0.body.0.1.weight"],
                       state["decoder.0.body.0.1.weight"])


def test_pretrained_weights_must_match_the_configured_network():
    from nsn2n.methods.speckle2self.config import Speckle2SelfConfig
    from nsn2n.methods.speckle2self.method import new_model

    with pytest.raises(ValueError, match="pretrained weights are for"):
        new_model(Speckle2SelfConfig(pretrained=True, width=8, levels=3))
