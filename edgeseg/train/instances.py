"""Training Mask R-CNN: instance datasets in, the five detection losses, COCO mask AP on the validation
split each epoch, best/last checkpoints and --resume like the semantic runs (`edgeseg train` picks this
loop for a zoo network whose task is "instance").

The recipe is torchvision's detection reference scaled to a small machine: SGD with momentum, a linear
warm-up then the poly decay, horizontal flips, crowd regions left out of the targets. Networks are
trained from scratch here (no hub downloads), so batch norm trains (`frozen_bn=False`) and every stage
of the backbone learns, and the images keep their size (min_size/max_size from --crop) as the engines
will see them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeseg.data.instances import InstanceDataset, InstanceSample, parse_instance_spec
from edgeseg.errors import EdgesegError
from edgeseg.measure.instance_metrics import InstanceMetrics, InstancePrediction, evaluate_instances
from edgeseg.models import build
from edgeseg.models.weights import load_weights
from edgeseg.train import checkpoint

WARMUP_STEPS = 100
# torchvision's training sampling is sized for 8 GPUs: 2000 proposals and 512 sampled RoIs per image, whose
# mask head alone costs ~60 GMACs a step here. A quarter of each keeps the positives that teach the heads
# (at most 25% of 128 RoIs) and makes a step on 2 cores a few seconds; pass --option to restore them.
SMALL_MACHINE = {"frozen_bn": False, "rpn_pre_nms_top_n_train": 1000, "rpn_post_nms_top_n_train": 500,
                 "box_batch_size_per_image": 128}
SYNTHETIC_EPOCHS = 12


@dataclass(frozen=True)
class InstanceTrainResult:
    best_mask_ap: float
    best_epoch: int
    best_path: Path
    last_path: Path
    history: list[dict]


def to_tensors(sample: InstanceSample, flip: bool = False) -> tuple[torch.Tensor, dict]:
    """A sample as Mask R-CNN takes it: RGB 0..1 CHW image, targets without crowd regions."""
    image, masks, boxes = sample.image[:, :, ::-1], sample.masks, sample.boxes.copy()
    keep = sample.iscrowd == 0
    masks, boxes, labels = masks[keep], boxes[keep], sample.labels[keep]
    if flip:
        width = image.shape[1]
        image, masks = image[:, ::-1], masks[:, :, ::-1]
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255)
    return tensor, {"boxes": torch.from_numpy(boxes).float().reshape(-1, 4), "labels": torch.from_numpy(labels).long(),
                    "masks": torch.from_numpy(np.ascontiguousarray(masks))}


class _TrainSet(torch.utils.data.Dataset):
    def __init__(self, dataset: InstanceDataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        flip = np.random.default_rng((self.seed, self.epoch, index)).random() < 0.5
        return to_tensors(self.dataset[index], flip)


def _as_lists(batch):
    return tuple(zip(*batch))


def predict(model: torch.nn.Module, dataset: InstanceDataset, progress: bool = True) -> dict[int, InstancePrediction]:
    """The network's instances on every image of `dataset`, keyed by image id, masks at full size."""
    from edgeseg.progress import progress as bar

    model.eval()
    predictions = {}
    with torch.no_grad():
        for index in bar(range(len(dataset)), desc="validate", unit="image", disable=not progress, leave=False):
            sample = dataset[index]
            image, _ = to_tensors(sample)
            out = model([image])[0]
            predictions[sample.image_id] = InstancePrediction(out["boxes"].numpy(), out["labels"].numpy(),
                                                              out["scores"].numpy(), out["masks"].numpy())
    return predictions


class InstanceTrainer:
    def __init__(self, config) -> None:
        from edgeseg.train.loop import start_run

        self.config = config
        self.out, self.last_path, self.best_path = start_run(config)
        self.train_set = parse_instance_spec(config.data, "train")
        self.val_set = parse_instance_spec(config.val or config.data, "val")
        self.info = self.train_set.info
        if config.epochs is None:
            config.epochs = SYNTHETIC_EPOCHS if self.info.name.startswith("synthetic") else 26
        options = {**SMALL_MACHINE, "min_size": min(config.crop), "max_size": max(config.crop),
                   **config.model_options}
        self.model = build(config.model, self.info.num_classes, **options)
        self.loader = torch.utils.data.DataLoader(
            _TrainSet(self.train_set, config.seed), batch_size=config.batch_size, shuffle=True,
            num_workers=config.workers, collate_fn=_as_lists, drop_last=True,
            generator=torch.Generator().manual_seed(config.seed), persistent_workers=config.workers > 0)
        if len(self.loader) == 0:
            raise EdgesegError(f"the training split has {len(self.train_set)} images, fewer than one batch of "
                               f"{config.batch_size}", "lower --batch-size or add images")
        params = [p for p in self.model.parameters() if p.requires_grad]
        if config.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        total = config.epochs * len(self.loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: min(
            1.0, (step + 1) / WARMUP_STEPS) * max(0.0, 1 - step / total) ** config.poly_power)
        self.start_epoch, self.best_ap, self.best_epoch, self.history = 0, -1.0, -1, []
        if config.resume:
            payload = checkpoint.load(self.last_path, resume=True)
            load_weights(self.model, payload["state_dict"], source=str(self.last_path))
            state = payload["train_state"]
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.start_epoch, self.best_ap = state["epoch"] + 1, state["best_miou"]
            self.best_epoch, self.history = state["best_epoch"], payload["metadata"]["history"]

    def train_epoch(self, epoch: int) -> dict[str, float]:
        from edgeseg.progress import progress

        self.model.train()
        self.loader.dataset.epoch = epoch
        sums: dict[str, float] = {}
        steps = 0
        bar = progress(self.loader, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="batch",
                       disable=not self.config.progress, leave=False)
        for images, targets in bar:
            losses = self.model(list(images), list(targets))
            loss = sum(losses.values())
            if not math.isfinite(loss.item()):
                raise EdgesegError(f"the loss became {loss.item()} in epoch {epoch + 1} ({ {k: round(v.item(), 3) for k, v in losses.items()} })",
                                   "lower --lr (Mask R-CNN from scratch wants 0.01-0.02 for a batch of 4-8)")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
            self.optimizer.step()
            self.scheduler.step()
            steps += 1
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value.item()
            bar.set_postfix(loss=f"{sum(sums.values()) / steps:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
        return {key: value / steps for key, value in sums.items()}

    def validate(self) -> InstanceMetrics:
        predictions = predict(self.model, self.val_set, self.config.progress)
        return evaluate_instances(self.val_set.coco_ground_truth(), predictions)

    def _save(self, metrics: InstanceMetrics, epoch: int) -> None:
        metadata = {"task": "instance", "instance_dataset": self.info.to_dict(),
                    "train_crop": list(self.config.crop), "val_metrics": metrics.to_dict(), "epoch": epoch + 1,
                    "history": self.history}
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "epoch": epoch,
                 "best_miou": self.best_ap, "best_epoch": self.best_epoch}  # best_miou: the run's selection score
        if self.best_epoch == epoch:
            checkpoint.save(self.best_path, self.model, metadata, overwrite=True)
        checkpoint.save(self.last_path, self.model, metadata, overwrite=True, train_state=state)

    def run(self) -> InstanceTrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        for epoch in range(self.start_epoch, self.config.epochs):
            t0 = time.time()
            losses = self.train_epoch(epoch)
            metrics = self.validate()
            score = (metrics.mask_ap or 0.0) / 100
            if score > self.best_ap:
                self.best_ap, self.best_epoch = score, epoch
            seconds = time.time() - t0
            self.history.append({"epoch": epoch + 1, **{k: round(v, 5) for k, v in losses.items()},
                                 "val_box_ap": metrics.box_ap, "val_mask_ap": metrics.mask_ap,
                                 "seconds": round(seconds, 1), "lr": self.scheduler.get_last_lr()[0]})
            self._save(metrics, epoch)
            print(f"epoch {epoch + 1}/{self.config.epochs}  loss {sum(losses.values()):.4f}  val box AP "
                  f"{metrics.box_ap or 0:.2f}  mask AP {metrics.mask_ap or 0:.2f}  best mask AP "
                  f"{100 * self.best_ap:.2f} (epoch {self.best_epoch + 1})  {seconds:.0f}s", flush=True)
        return InstanceTrainResult(self.best_ap, self.best_epoch + 1, self.best_path, self.last_path, self.history)
