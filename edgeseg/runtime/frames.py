"""The one resize every consumer of a fixed-size engine shares (calibration, eval, bench, stream), so
all four see the same pixels, and the way label maps go back to the frame's size. numpy + OpenCV."""

from __future__ import annotations

import cv2
import numpy as np


def resize_to_input(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """The one resize every consumer of a fixed-size network shares (eval, calibration, bench, stream)."""
    if size is None or None in size or image.shape[:2] == tuple(size):  # a dynamic engine takes any size
        return image
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bring a predicted label map back to the original image size (nearest: class ids do not blend)."""
    if labels.shape[:2] == tuple(size):
        return labels
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
