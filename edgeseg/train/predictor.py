"""Scoring a PyTorch network on a dataset: full-image (or fixed-size) inference, optional
multi-scale + flip test-time augmentation, per-image predictions saved as label PNGs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.data.base import DatasetInfo, SegDataset
from edgeseg.data.metrics import ConfusionMatrix, SegMetrics
from edgeseg.errors import EdgesegError
from edgeseg.models.preprocess import Preprocess
from edgeseg.runtime.frames import resize_labels, resize_to_input

TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # DeepLabV3's evaluation scales


@dataclass(frozen=True)
class EvalOptions:
    input_size: tuple[int, int] | None = None  # None: full image
    tta: bool = False
    save_predictions: Path | None = None
    progress: bool = True


class Predictor:
    """A network plus its normalization: BGR uint8 image in, H x W class ids out."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        self.model = model.eval()
        self.preprocess = Preprocess(mean, std)

    @torch.inference_mode()
    def probabilities(self, image: np.ndarray, scale: float = 1.0, flip: bool = False) -> torch.Tensor:
        x = self.preprocess(torch.from_numpy(np.ascontiguousarray(image))[None])
        h, w = x.shape[-2:]
        if scale != 1.0:
            x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
        if flip:
            x = x.flip(-1)
        logits = self.model(x)
        if flip:
            logits = logits.flip(-1)
        if logits.shape[-2:] != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits.softmax(1)[0]

    def predict(self, image: np.ndarray, input_size: tuple[int, int] | None = None, tta: bool = False) -> np.ndarray:
        resized = resize_to_input(image, input_size)
        if tta:
            # scales that would shrink the image below what the network takes are skipped
            smallest = getattr(self.model, "min_input_size", 1)
            scales = [s for s in TTA_SCALES if min(resized.shape[:2]) * s >= smallest]
            probs = sum(self.probabilities(resized, s, f) for s in scales for f in (False, True))
        else:
            probs = self.probabilities(resized)
        labels = probs.argmax(0).to(torch.uint8).numpy()
        return resize_labels(labels, image.shape[:2])


def evaluate(predictor: Predictor, dataset: SegDataset, info: DatasetInfo, options: EvalOptions = EvalOptions()
             ) -> SegMetrics:
    """mIoU & co. of `predictor` on `dataset`, whose labels use `info`'s classes."""
    from tqdm import tqdm

    if dataset.info.num_classes != info.num_classes:
        raise EdgesegError(f"the network predicts {info.num_classes} classes but {dataset.info.name} has "
                           f"{dataset.info.num_classes}", "evaluate on data with the classes it was trained on")
    out_dir = _prediction_dir(options.save_predictions)
    matrix = ConfusionMatrix(info.num_classes, dataset.info.ignore_index)
    for index in tqdm(range(len(dataset)), desc="eval", unit="img", disable=not options.progress, leave=False):
        sample = dataset[index]
        labels = predictor.predict(sample.image, options.input_size, options.tta)
        matrix.update(sample.label, labels)
        if out_dir is not None:
            cv2.imwrite(str(out_dir / f"{sample.name}.png"), labels)
    return matrix.compute(info.classes)


def _prediction_dir(path: Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise EdgesegError(f"prediction folder {path} is not empty", "pass an empty or new folder")
    path.mkdir(parents=True, exist_ok=True)
    return path
