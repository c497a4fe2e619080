"""Training augmentation (the DeepLab recipe) and the evaluation resize policy, on numpy/OpenCV.

Training: random scale 0.5-2.0, pad with the ignore index to the crop size, random crop,
horizontal flip, photometric jitter. Evaluation: the full image by default; with a fixed input
size the image is resized to it (bilinear) and the prediction is resized back (nearest), which is
exactly what a fixed-size engine sees in deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TrainAugment:
    crop: tuple[int, int]  # H, W
    ignore_index: int
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    jitter: float = 0.25  # max relative change of brightness, contrast and saturation; hue shifts by jitter*10 deg

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        image, label = random_scale(image, label, rng, self.scale_range)
        image, label = random_crop(image, label, rng, self.crop, self.ignore_index)
        if self.flip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        if self.jitter:
            image = photometric_jitter(image, rng, self.jitter)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def random_scale(image, label, rng: np.random.Generator, scale_range: tuple[float, float]):
    scale = rng.uniform(*scale_range)
    h, w = label.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


def random_crop(image, label, rng: np.random.Generator, crop: tuple[int, int], ignore_index: int):
    """Crop (ch, cw); smaller images are padded first: black pixels, ignored labels."""
    ch, cw = crop
    h, w = label.shape
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    if pad_h or pad_w:
        image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=ignore_index)
        h, w = label.shape
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    return image[top:top + ch, left:left + cw], label[top:top + ch, left:left + cw]


def photometric_jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brightness, contrast, saturation and hue in one HSV round trip (vectorized)."""
    brightness = 1 + rng.uniform(-strength, strength)
    contrast = 1 + rng.uniform(-strength, strength)
    saturation = 1 + rng.uniform(-strength, strength)
    hue_shift = rng.uniform(-strength, strength) * 10  # OpenCV hue runs 0..180
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_shift) % 180
    hsv[..., 1] *= saturation
    value = hsv[..., 2] * brightness
    hsv[..., 2] = (value - value.mean()) * contrast + value.mean()
    return cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2BGR)
