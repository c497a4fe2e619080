"""Checkpoints and weight files that are crafted, damaged or not files at all: each is refused where it is
read, naming the key or what the path is, and nothing in a checkpoint makes edgeseg open a file."""

from __future__ import annotations

import os

import pytest
import torch

from edgeseg.data.synthetic import SYNTHETIC_INFO
from edgeseg.errors import CheckpointError
from edgeseg.models import build
from edgeseg.models.weights import read_weights
from edgeseg.train import checkpoint


def _payload(network: torch.nn.Module, metadata: dict | None = None, **changes) -> dict:
    payload = {"format": "edgeseg-checkpoint/1", "model": network.edgeseg_name,
               "options": dict(network.edgeseg_options), "num_classes": network.num_classes,
               "metadata": {"dataset": SYNTHETIC_INFO.to_dict()} if metadata is None else metadata,
               "state_dict": network.state_dict()}
    payload.update(changes)
    return payload


@pytest.fixture(scope="module")
def lraspp11():
    torch.manual_seed(0)
    return build("lraspp", 11)


def _write(tmp_path, payload: dict, name: str = "c.pt"):
    path = tmp_path / name
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("drop", ["model", "num_classes", "state_dict"])
def test_a_missing_key_is_named_not_a_key_error(lraspp11, tmp_path, drop):
    payload = _payload(lraspp11)
    del payload[drop]
    with pytest.raises(CheckpointError, match=f"has no '{drop}'"):
        checkpoint.build_from_checkpoint(_write(tmp_path, payload))


@pytest.mark.parametrize("key,value,message", [
    ("model", 7, "model is 7, not a model name"),
    ("num_classes", "11", "num_classes is '11', not a positive whole number"),
    ("num_classes", True, "not a positive whole number"),
    ("options", ["backbone"], "options is .*not a dict"),
    ("metadata", "camvid", "metadata is 'camvid', not a dict"),
    ("state_dict", {"w": [1.0, 2.0]}, r"state_dict\['w'\] is 'list', not a tensor"),
])
def test_wrong_types_are_named(lraspp11, tmp_path, key, value, message):
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(_write(tmp_path, _payload(lraspp11, **{key: value})))


def test_a_broken_dataset_description_is_refused_at_load(lraspp11, tmp_path):
    dataset = SYNTHETIC_INFO.to_dict()
    del dataset["mean"]
    with pytest.raises(CheckpointError, match="metadata.dataset has no mean"):
        checkpoint.load(_write(tmp_path, _payload(lraspp11, {"dataset": dataset})))
    dataset = {**SYNTHETIC_INFO.to_dict(), "std": [0.2, 0.0, 0.2]}
    with pytest.raises(CheckpointError, match="metadata.dataset.std"):
        checkpoint.load(_write(tmp_path, _payload(lraspp11, {"dataset": dataset})))
    with pytest.raises(CheckpointError, match=r"metadata.train_crop is \['a', 'b'\]"):
        checkpoint.load(_write(tmp_path, _payload(lraspp11, {"train_crop": ["a", "b"]})))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_first_bad_key(lraspp11, tmp_path, bad):
    state = {k: v.clone() for k, v in lraspp11.state_dict().items()}
    floats = [k for k, v in state.items() if v.is_floating_point()]
    state[floats[3]].view(-1)[0] = bad
    state[floats[7]].view(-1)[0] = bad
    path = _write(tmp_path, _payload(lraspp11, state_dict=state))
    with pytest.raises(CheckpointError, match=f"non-finite weights.*{floats[3]} has 1 of") as info:
        checkpoint.build_from_checkpoint(path)
    assert "earlier checkpoint" in info.value.fix


def test_a_network_whose_class_count_disagrees_with_its_metadata_is_refused(tmp_path):
    five = build("lraspp", 5)  # a 5-output network saved with CamVid's 11 class names and colours
    path = _write(tmp_path, _payload(five))
    with pytest.raises(CheckpointError, match="predicts 5 classes but it lists 11 classes in its metadata"):
        checkpoint.build_from_checkpoint(path)
    # the count changed to match the names: the classifier's 5 outputs still disagree
    path = _write(tmp_path, _payload(five, num_classes=11), "forged.pt")
    with pytest.raises(CheckpointError, match="has 5 classes but the model was built with 11"):
        checkpoint.build_from_checkpoint(path)
    palette = {**SYNTHETIC_INFO.to_dict(), "palette": SYNTHETIC_INFO.to_dict()["palette"][:5]}
    with pytest.raises(CheckpointError, match="lists 5 palette colours"):
        checkpoint.load(_write(tmp_path, _payload(build("lraspp", 11), {"dataset": palette}), "palette.pt"))


def test_options_naming_a_file_are_not_opened(lraspp11, tmp_path, monkeypatch):
    opened = []
    import edgeseg.models.weights as weights

    monkeypatch.setattr(weights, "read_weights", lambda path: opened.append(path) or {})
    secret = tmp_path / "secret.pth"
    torch.save({"x": torch.zeros(1)}, secret)
    payload = _payload(lraspp11, options={**lraspp11.edgeseg_options, "pretrained_backbone": str(secret)})
    model, loaded = checkpoint.build_from_checkpoint(_write(tmp_path, payload))
    assert opened == [] and "pretrained_backbone" not in loaded["options"]
    assert torch.equal(model.state_dict()[next(iter(model.state_dict()))],
                       lraspp11.state_dict()[next(iter(lraspp11.state_dict()))])


def _not_files(tmp_path):
    folder = tmp_path / "a_folder.pt"
    folder.mkdir()
    fifo = tmp_path / "a_fifo.pt"
    os.mkfifo(fifo)
    return [(folder, "is a directory"), (fifo, "is a FIFO"), ("/dev/null", "is a character device"),
            (tmp_path / "gone.pt", "does not exist")]


def test_checkpoint_and_weights_paths_say_what_they_are(tmp_path):
    for path, message in _not_files(tmp_path):  # a FIFO would block a plain open: this returns at once
        with pytest.raises(CheckpointError, match=message):
            checkpoint.load(path)
        with pytest.raises(CheckpointError, match=message):
            read_weights(path)


def test_read_weights_refuses_non_finite_tensors(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"a.weight": torch.ones(2), "b.weight": torch.tensor([1.0, float("nan")])}, path)
    with pytest.raises(CheckpointError, match="non-finite weights.*b.weight"):
        read_weights(path)


def test_resume_state_of_the_wrong_shape_is_named(lraspp11, tmp_path):
    payload = _payload(lraspp11, train_state={"optimizer": {}, "epoch": 1})
    with pytest.raises(CheckpointError, match="train_state has no scheduler, best_miou, best_epoch"):
        checkpoint.load(_write(tmp_path, payload))


def test_resuming_from_a_checkpoint_without_training_state_is_named(lraspp11, tmp_path):
    with pytest.raises(CheckpointError, match="holds no training state to resume from"):
        checkpoint.load(_write(tmp_path, _payload(lraspp11)), resume=True)


def test_a_good_checkpoint_still_round_trips(lraspp11, tmp_path):
    path = tmp_path / "ok.pt"
    checkpoint.save(path, lraspp11, {"dataset": SYNTHETIC_INFO.to_dict(), "train_crop": [64, 96]})
    model, payload = checkpoint.build_from_checkpoint(path)
    assert payload["num_classes"] == 11 and payload["metadata"]["train_crop"] == [64, 96]
