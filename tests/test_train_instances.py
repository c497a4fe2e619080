"""`edgeseg train --model maskrcnn`: instance data in, the detection losses, COCO AP each epoch, checkpoints
that --resume continues and `edgeseg eval --checkpoint` scores; instance networks refused where the chain
takes semantic ones (and the reverse)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeseg.cli.main import main
from edgeseg.data.instances import parse_instance_spec
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.train import checkpoint
from edgeseg.train.instances import to_tensors
from edgeseg.train.loop import TrainConfig, train


def _config(tmp_path, **changes) -> TrainConfig:
    base = dict(model="maskrcnn", data="synthetic-instances:4", val="synthetic-instances:2:val", out=tmp_path / "run",
                epochs=1, batch_size=2, crop=(96, 128), model_options={"backbone": "mobilenetv3_large", "detections_per_img": 10}, workers=0,
                progress=False, threads=2, lr=1e-3, optimizer="adamw")
    return TrainConfig(**{**base, **changes})


def test_flipped_targets_follow_the_image():
    sample = parse_instance_spec("synthetic-instances:1", "train")[0]
    image, target = to_tensors(sample)
    flipped, flipped_target = to_tensors(sample, flip=True)
    assert torch.equal(flipped, image.flip(-1))
    assert torch.equal(flipped_target["masks"], target["masks"].flip(-1))
    width = image.shape[-1]
    boxes = target["boxes"]
    expected = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    assert torch.allclose(flipped_target["boxes"], expected)
    ys, xs = np.nonzero(flipped_target["masks"][0].numpy())  # each box still encloses its mask
    x0, y0, x1, y1 = flipped_target["boxes"][0].tolist()
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1


@pytest.mark.slow
def test_a_short_run_trains_scores_saves_and_resumes(tmp_path, capsys):
    result = train(_config(tmp_path))
    assert result.best_epoch == 1 and result.best_path.is_file() and result.last_path.is_file()
    entry = result.history[0]
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"} <= set(entry)
    assert all(np.isfinite(entry[k]) for k in ("loss_classifier", "loss_mask"))
    assert entry["val_mask_ap"] is not None and 0 <= entry["val_mask_ap"] <= 100
    payload = checkpoint.load(result.last_path, resume=True)
    assert payload["model"] == "maskrcnn" and payload["num_classes"] == 4  # 3 classes + background
    assert payload["metadata"]["instance_dataset"]["classes"] == ["car", "pedestrian", "bicyclist"]
    again = train(_config(tmp_path, epochs=2, resume=True))
    assert [h["epoch"] for h in again.history] == [1, 2]
    capsys.readouterr()
    report = tmp_path / "ap.json"
    assert main(["eval", "--checkpoint", str(again.last_path), "--data", "synthetic-instances:2:val",
                 "--no-progress", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "mask" in out and "pedestrian" in out
    scores = json.loads(report.read_text())
    assert {"box_ap", "mask_ap", "mask_ap_per_class"} <= set(scores) and scores["images"] == 2


def test_a_semantic_dataset_cannot_train_an_instance_network(tmp_path):
    with pytest.raises(BadInputError, match="semantic segmentation dataset: it has no instances"):
        train(_config(tmp_path, data="synthetic:4"))


def test_a_run_folder_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"x")
    with pytest.raises(EdgesegError, match="already holds a training run"):
        train(_config(tmp_path))


@pytest.fixture(scope="module")
def instance_checkpoint(tmp_path_factory):
    from edgeseg.models import build

    model = build("maskrcnn", 4, backbone="mobilenetv3_large", min_size=96, max_size=128)
    path = tmp_path_factory.mktemp("ckpt") / "maskrcnn.pt"
    checkpoint.save(path, model, {"task": "instance"})
    return path


def test_the_semantic_export_names_an_instance_network_and_sends_it_to_build(instance_checkpoint, tmp_path, capsys):
    """`edgeseg export` writes semantic graphs; an instance network's graph comes with its engine (build)."""
    assert main(["export", "--checkpoint", str(instance_checkpoint), "--out", str(tmp_path / "x.onnx")]) != 0
    err = capsys.readouterr().err
    assert "is an instance segmentation network (maskrcnn)" in err and "edgeseg build --checkpoint" in err
    assert not (tmp_path / "x.onnx").exists()


def test_instance_eval_refuses_semantic_options_and_semantic_data(instance_checkpoint, capsys):
    assert main(["eval", "--checkpoint", str(instance_checkpoint), "--data", "synthetic-instances:1:val",
                 "--tta"]) != 0
    assert "--tta apply to semantic networks" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(instance_checkpoint), "--data", "synthetic:1:val"]) != 0
    assert "has no instances" in capsys.readouterr().err
