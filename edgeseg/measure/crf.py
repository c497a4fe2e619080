"""The fully connected CRF of DeepLab v1/v2 (Krähenbühl and Koltun 2011) over a network's softmax, measured.

Mean-field inference of the dense CRF with Potts compatibility and two Gaussian kernels over all pixel pairs:
an appearance (bilateral) kernel w1 * exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)
and a smoothness kernel w2 * exp(-|p_i - p_j|^2 / 2 theta_gamma^2); the unary is -log of the network's
probabilities. Each iteration: Q = softmax(-U + sum_m w_m * K_m Q), kernels normalized symmetrically.

`dense_crf` runs it with pydensecrf (the `crf` extra: pydensecrf2, Krähenbühl's C++ permutohedral lattice,
built from source with Cython), the maintained implementation of the papers' algorithm; `exact_dense_crf`
computes the same mean field with the exact all-pairs kernels in numpy, for images of a few thousand pixels
only (N^2 memory): the reference the lattice is tested against, since the lattice only approximates the
Gaussian filtering.

`CrfEvaluation` puts it in `edgeseg eval`: one network run per frame gives the labels without the CRF (the
reference) and with it, so the report has both mIoUs, their per-class difference and the CRF's time per
frame from one pass.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from edgeseg.errors import EdgesegError

CRF_EXTRA = "pip install 'edgeseg[crf]' (pydensecrf2, built from source: needs a C++ compiler and Cython)"


@dataclass(frozen=True)
class CrfParams:
    """DeepLab's published VOC values for its VGG-16 LargeFOV model (bi_w 4, bi_xy_std 121, bi_rgb_std 5, pos_w 3,
    pos_xy_std 3, 10 iterations; its ResNet-101 v2 used 4 / 67 / 3 and pos_xy_std 1); theta_alpha and theta_gamma
    in pixels of the frame the CRF runs on, theta_beta in 0-255 colour units."""

    w1: float = 4.0  # appearance (bilateral) kernel weight
    theta_alpha: float = 121.0
    theta_beta: float = 5.0
    w2: float = 3.0  # smoothness kernel weight
    theta_gamma: float = 3.0
    iterations: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


def dense_crf(probs: np.ndarray, image_bgr: np.ndarray, params: CrfParams = CrfParams()) -> np.ndarray:
    """(C, H, W) probabilities and the (H, W, 3) uint8 BGR frame -> (C, H, W) mean-field marginals."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise EdgesegError("the dense CRF needs pydensecrf, which is not installed", CRF_EXTRA) from None
    c, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary(probs).reshape(c, -1)))
    crf.addPairwiseGaussian(sxy=params.theta_gamma, compat=params.w2)
    crf.addPairwiseBilateral(sxy=params.theta_alpha, srgb=params.theta_beta,
                             rgbim=np.ascontiguousarray(image_bgr[..., ::-1]), compat=params.w1)
    return np.asarray(crf.inference(params.iterations), np.float32).reshape(c, h, w)


def unary(probs: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs, 1e-8, 1.0)).astype(np.float32)


def exact_dense_crf(probs: np.ndarray, image_bgr: np.ndarray, params: CrfParams = CrfParams(),
                    max_pixels: int = 8192) -> np.ndarray:
    """The same mean field with exact all-pairs Gaussian kernels (self included, symmetric normalization, as
    pydensecrf's default NORMALIZE_SYMMETRIC): for small images, as the lattice's reference."""
    c, h, w = probs.shape
    if h * w > max_pixels:
        raise ValueError(f"{h}x{w} is too large for the exact CRF (N^2 kernels): at most {max_pixels} pixels")
    ys, xs = np.mgrid[0:h, 0:w]
    pos = np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float64)
    rgb = image_bgr[..., ::-1].reshape(-1, 3).astype(np.float64)
    kernels = [(params.w2, _gaussian(pos / params.theta_gamma)),
               (params.w1, _gaussian(np.concatenate([pos / params.theta_alpha, rgb / params.theta_beta], 1)))]
    u = unary(probs).reshape(c, -1).astype(np.float64)
    q = softmax(-u, axis=0)
    for _ in range(params.iterations):
        message = sum(weight * (q @ kernel) for weight, kernel in kernels)
        q = softmax(-u + message, axis=0)
    return q.reshape(c, h, w).astype(np.float32)


def _gaussian(features: np.ndarray) -> np.ndarray:
    sq = (features ** 2).sum(1)
    k = np.exp(-0.5 * np.maximum(sq[:, None] + sq[None, :] - 2 * features @ features.T, 0))
    norm = 1.0 / np.sqrt(k.sum(1))
    return norm[:, None] * k * norm[None, :]


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(logits - logits.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


Scores = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 BGR -> (N, C, H, W) probabilities at that size


@dataclass
class CrfEvaluation:
    """Two predictors for `evaluate` over one network run a frame: `refined` (with the CRF; evaluate's
    predictor) and `plain` (without; its reference), which returns the labels `refined` computed from the
    same frames instead of running the network again."""

    scores: Scores
    size: tuple[int, int] | None
    params: CrfParams = CrfParams()
    crf_ms: list[float] = field(default_factory=list)  # per frame
    network_ms: list[float] = field(default_factory=list)  # per frame, scores included
    _last: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def refined(self):
        from edgeseg.measure.evaluate import FunctionPredictor

        return FunctionPredictor(self._refine, self.size)

    @property
    def plain(self):
        from edgeseg.measure.evaluate import FunctionPredictor

        return FunctionPredictor(self._plain, self.size)

    def _refine(self, frames: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        probs = np.asarray(self.scores(frames), np.float32)
        self.network_ms.append(1000 * (time.perf_counter() - start) / len(frames))
        self._last = (frames, probs.argmax(1).astype(np.uint8))
        out = []
        for frame, p in zip(frames, probs):
            start = time.perf_counter()
            out.append(dense_crf(p, frame, self.params).argmax(0).astype(np.uint8))
            self.crf_ms.append(1000 * (time.perf_counter() - start))
        return np.stack(out)

    def _plain(self, frames: np.ndarray) -> np.ndarray:
        if self._last is None or not np.array_equal(self._last[0], frames):
            raise RuntimeError("the plain predictor runs after the refined one on the same frames")
        return self._last[1]

    def timing(self) -> dict:
        return {"crf_ms_per_frame": float(np.median(self.crf_ms)) if self.crf_ms else None,
                "network_ms_per_frame": float(np.median(self.network_ms)) if self.network_ms else None,
                "frames": len(self.crf_ms)}
