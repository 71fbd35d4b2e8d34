import os

import pytest
import torch

from model.checkpoint import (
    FORMAT,
    CheckpointError,
    config_from_official_flags,
    load_checkpoint,
    load_official,
    read_checkpoint,
    save_checkpoint,
    to_official,
    weights_sha256,
)
from model.network.predrnn import PredRNN, PredRNNConfig

torch.set_num_threads(1)


def make_model(version="v2") -> PredRNN:
    torch.manual_seed(1)
    return PredRNN(PredRNNConfig(version=version, num_hidden=[8, 8], input_length=3, output_length=2))


def test_round_trip_is_exact_and_self_describing(tmp_path):
    model = make_model()
    path = tmp_path / "run" / "model.pt"
    meta = save_checkpoint(path, model, iteration=42, extra_meta={"data": "unit test"})
    payload = torch.load(path, weights_only=True)  # plain containers only
    assert payload["format"] == FORMAT
    assert payload["config"]["num_hidden"] == [8, 8]
    assert payload["meta"]["iteration"] == 42 and payload["meta"]["data"] == "unit test"
    assert payload["meta"]["scaling"] == {"kind": "linear-dbz", "dbz_min": -10.0, "dbz_max": 60.0}
    assert meta["weights_sha256"] == weights_sha256(model.state_dict())
    loaded, loaded_meta = load_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    assert loaded_meta["code_version"]
    assert not list(tmp_path.joinpath("run").glob(".*"))  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any other file, not 0600


def test_tampered_weights_are_detected(tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path, make_model())
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["conv_last.weight"] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


@pytest.mark.parametrize("version,name", [("v2", "predrnn_v2"), ("v1", "predrnn")])
def test_authors_format_round_trips_losslessly(tmp_path, version, name):
    model = make_model(version)
    path = tmp_path / "model.ckpt-80000"
    torch.save(to_official(model), path)  # what their run.py writes: {'net_param': state_dict}
    config = config_from_official_flags(name, "8,8", filter_size=5, patch_size=4, img_channel=1,
                                        layer_norm=0, input_length=3, total_length=5)
    official = load_official(path, config)
    assert official.config.version == version
    for key, value in model.state_dict().items():
        assert torch.equal(value, official.state_dict()[key])
    assert set(to_official(official)["net_param"]) == set(model.state_dict())
    frames = torch.rand(1, 3, 1, 16, 16)
    assert torch.equal(model.eval().forecast(frames, 2), official.forecast(frames, 2))


def test_authors_checkpoint_with_wrong_hyperparameters_is_explained(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save(to_official(make_model()), path)
    wrong_width = config_from_official_flags("predrnn_v2", "16,16")
    with pytest.raises(CheckpointError, match="do not fit the hyperparameters"):
        load_official(path, wrong_width)
    wrong_version = config_from_official_flags("predrnn", "8,8")
    with pytest.raises(CheckpointError, match="unexpected"):
        load_official(path, wrong_version)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        read_checkpoint(junk)
    official = tmp_path / "official.pt"
    torch.save(to_official(make_model()), official)
    with pytest.raises(CheckpointError, match="authors' checkpoint"):
        load_checkpoint(official)


def test_train_state_travels_with_the_checkpoint(tmp_path):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _, loss = model(torch.rand(1, 5, 1, 8, 8))
    loss.total.backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "iteration": 1}
    save_checkpoint(tmp_path / "last.pt", model, iteration=1, train_state=state)
    payload = read_checkpoint(tmp_path / "last.pt")
    assert payload["train_state"]["iteration"] == 1
    assert torch.equal(payload["train_state"]["torch_rng"], state["torch_rng"])
