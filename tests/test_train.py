"""A short real training run on small data: checkpoints, metadata, resume, evaluation CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from edgeseg.cli.main import main
from edgeseg.data import parse_spec
from edgeseg.data.base import DatasetInfo, Sample, SegDataset
from edgeseg.errors import EdgesegError
from edgeseg.train import checkpoint
from edgeseg.train.loop import SYNTHETIC_EPOCHS, TrainConfig, Trainer, median_frequency_weights, train


def _config(root, out, **overrides) -> TrainConfig:
    options = dict(model="lraspp", data=f"camvid:{root}", out=out, epochs=2, batch_size=2, crop=(48, 64),
                   workers=0, precision="fp32", progress=False, lr=0.02)
    options.update(overrides)
    return TrainConfig(**options)


def test_training_writes_checkpoints_that_later_steps_can_use(camvid_root, tmp_path):
    out = tmp_path / "run"
    result = train(_config(camvid_root, out, class_weights="median"))
    assert result.best_path.exists() and result.last_path.exists()
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert json.loads((out / "history.json").read_text()) == result.history

    payload = torch.load(result.best_path, weights_only=True)  # plain data only
    meta = payload["metadata"]
    assert payload["model"] == "lraspp" and payload["num_classes"] == 11
    assert meta["dataset"]["classes"][3] == "road" and meta["dataset"]["ignore_index"] == 11
    assert meta["dataset"]["mean"] and meta["dataset"]["palette"][3] == [128, 64, 128]
    assert meta["train_crop"] == [48, 64] and "miou" in meta["val_metrics"]
    assert meta["config"]["class_weights"] == "median" and "command" in meta
    model, _ = checkpoint.build_from_checkpoint(result.best_path)
    assert model(torch.randn(1, 3, 48, 64)).shape == (1, 11, 48, 64)


def test_resume_continues_and_existing_runs_are_not_overwritten(camvid_root, tmp_path):
    out = tmp_path / "run"
    train(_config(camvid_root, out, epochs=1))
    with pytest.raises(EdgesegError, match="already holds a training run"):
        Trainer(_config(camvid_root, out, epochs=2))
    result = train(_config(camvid_root, out, epochs=2, resume=True))
    assert [h["epoch"] for h in result.history] == [1, 2]
    with pytest.raises(EdgesegError, match="nothing to resume"):
        Trainer(_config(camvid_root, tmp_path / "fresh", resume=True))


def test_loss_falls_on_learnable_data(camvid_root, tmp_path):
    result = train(_config(camvid_root, tmp_path / "run", epochs=6, optimizer="adamw", lr=3e-3))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0], losses


def test_bf16_autocast_trains(camvid_root, tmp_path):
    result = train(_config(camvid_root, tmp_path / "run", epochs=1, precision="bf16"))
    assert result.history[0]["loss"] > 0


class _Labels(SegDataset):
    def __init__(self, labels):
        self.labels = labels
        self.info = DatasetInfo("t", tuple("abcd"), ((0, 0, 0),) * 4, ignore_index=255)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return Sample(np.zeros((*self.labels[i].shape, 3), np.uint8), self.labels[i], str(i))


def test_median_frequency_weights_by_hand():
    # freq = pixels of c / pixels of the images holding c: a 0.5, b 0.25, c 0.5, d 0.25; median 0.375
    dataset = _Labels([np.array([[0, 0], [0, 1]], np.uint8), np.array([[0, 2], [2, 3]], np.uint8)])
    assert median_frequency_weights(dataset, 4, 255) == [0.75, 1.5, 0.75, 1.5]
    with pytest.raises(EdgesegError, match="never appear"):
        median_frequency_weights(_Labels([np.zeros((2, 2), np.uint8)]), 4, 255)


def test_eval_cli_prints_table_writes_json_and_predictions(camvid_root, tmp_path, capsys):
    result = train(_config(camvid_root, tmp_path / "run", epochs=1))
    report, preds = tmp_path / "metrics.json", tmp_path / "preds"
    code = main(["eval", "--checkpoint", str(result.best_path), "--data", f"camvid:{camvid_root}:val",
                 "--json", str(report), "--save-predictions", str(preds), "--no-progress"])
    assert code == 0
    assert "mIoU" in capsys.readouterr().out
    metrics = json.loads(report.read_text())
    assert set(metrics) >= {"miou", "macc", "pixel_acc", "per_class_iou"} and 0 <= metrics["miou"] <= 1
    assert set(metrics["per_class_iou"]) == set(parse_spec(f"camvid:{camvid_root}").info.classes)
    saved = sorted(p.name for p in preds.iterdir())
    assert saved == [f"0001TP_val_{i:03d}.png" for i in range(4)]
    label = cv2.imread(str(preds / saved[0]), cv2.IMREAD_UNCHANGED)
    assert label.shape == (48, 64) and label.max() < 11
    # TTA runs too and reports the same keys
    assert main(["eval", "--checkpoint", str(result.best_path), "--data", f"camvid:{camvid_root}:val", "--tta",
                 "--no-progress"]) == 0


def test_unusable_dataset_is_refused_before_training(camvid_root, tmp_path):
    (camvid_root / "trainannot" / "0001TP_train_002.png").unlink()
    with pytest.raises(EdgesegError, match="1 of 4 samples of camvid train cannot be used: .*0001TP_train_002.png"):
        Trainer(_config(camvid_root, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_synthetic_data_trains_with_its_short_default(tmp_path):
    config = TrainConfig(model="lraspp", data="synthetic:4", val="synthetic:2:val", out=tmp_path / "run",
                         batch_size=2, crop=(96, 128), workers=0, progress=False, precision="fp32")
    trainer = Trainer(config)
    assert trainer.config.epochs == SYNTHETIC_EPOCHS and trainer.info.name == "synthetic"
    result = train(replace(config, epochs=1, out=tmp_path / "short"))
    assert result.best_path.exists() and 0 <= result.best_miou <= 1


def test_non_finite_steps_are_skipped_then_refused(camvid_root, tmp_path):
    trainer = Trainer(_config(camvid_root, tmp_path / "run"))
    trainer.skipped = 0
    images = torch.zeros(2, 48, 64, 3, dtype=torch.uint8)
    loss = trainer.model(trainer.preprocess(images)).mean()
    loss.backward()
    assert trainer._step_is_finite(loss, 0) is True and trainer.skipped == 0
    trainer.model.zero_grad()
    loss = trainer.model(trainer.preprocess(images)).sum() * float("nan")
    loss.backward()
    assert trainer._step_is_finite(loss, 0) is False and trainer.skipped == 1
    # a loss that is never finite (here: a NaN class weight) stops training with the fix
    with pytest.raises(EdgesegError, match="non-finite loss or gradient"):
        train(_config(camvid_root, tmp_path / "nan", class_weights=[float("nan")] * 11))
