"""The segmentation tail on the host: bilinear upsampling of low-resolution logits, then argmax.

Why: on CPUs the tail costs as much as the network. Fast-SCNN at 360x480 computes 1/8-resolution
logits; upsampling 11 channels to full size and taking the argmax there was 7-10 ms of a 20 ms FP32
run on ONNX Runtime and OpenVINO, a fixed float cost INT8 cannot shrink. Most of that work is wasted:
a bilinear output pixel is a convex combination of its four source pixels, so where all four have
the same argmax class, every output pixel between them has that class too (ties included: argmax
keeps the first maximal class, and a blend of vectors whose first maximum is class k has its first
maximum at k). Only the cells whose corners disagree, the class boundaries, are interpolated.

The result is the same label map as Resize (linear, half_pixel, no antialias) followed by ArgMax over
the channels, up to float rounding where two classes are tied to the last bit. Even integer scale
factors (x2, x4, x8, x16, x32: every stride a zoo network has) take the boundary-only path; other
sizes interpolate every pixel with OpenCV, which uses the same half-pixel convention.
"""

from __future__ import annotations

import numpy as np

KIND = "lowres-logits"  # OutputSpec.kind of a graph whose tail runs here


def upsample_argmax(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, C, h, w) float logits -> (N, H, W) class ids of their bilinear upsampling to `size`."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be (N, C, h, w), got shape {logits.shape}")
    n, c, h, w = logits.shape
    height, width = int(size[0]), int(size[1])
    if (h, w) == (height, width):
        return np.stack([first_argmax(np.asarray(frame, np.float32)) for frame in logits])
    fy, fx = height // h, width // w
    even_factors = fy * h == height and fx * w == width and fy % 2 == 0 and fx % 2 == 0
    one = _boundary_cells if even_factors else _every_pixel
    return np.stack([one(np.asarray(frame, np.float32), height, width) for frame in logits])


def first_argmax(scores: np.ndarray) -> np.ndarray:
    """argmax over axis 0 (the first maximal class, as np.argmax), in whole-plane operations.

    np.argmax over a short axis runs a small loop per pixel; the maximum of the planes, the planes
    equal to it, and the largest reversed index among those are three vectorized passes: 7x faster
    for 11 classes at 360x480 here.
    """
    c = scores.shape[0]
    dtype = _label_dtype(c)
    reversed_index = (c - 1 - np.arange(c, dtype=dtype)).reshape((c,) + (1,) * (scores.ndim - 1))
    hits = scores == np.maximum.reduce(scores, axis=0)
    return (c - 1 - np.maximum.reduce(hits * reversed_index, axis=0)).astype(dtype, copy=False)


def _label_dtype(classes: int):
    return np.uint8 if classes <= 256 else np.int32


def _boundary_cells(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """One (C, h, w) frame, even integer factors: fill uniform cells, interpolate only mixed ones.

    With the source edge-padded by one pixel (which is what half-pixel clamping does), output row i
    lies between padded rows r and r+1 where i + fy/2 = r*fy + k, at fraction (k + 0.5)/fy: each cell
    of (fy, fx) output pixels shares four source pixels and one pattern of weights.
    """
    c, h, w = logits.shape
    fy, fx = height // h, width // w
    padded = _edge_pad(logits)
    coarse = first_argmax(padded)
    top_left = coarse[:-1, :-1]
    uniform = (top_left == coarse[1:, :-1]) & (top_left == coarse[:-1, 1:]) & (top_left == coarse[1:, 1:])
    # every cell filled with its top-left class: columns repeated, rows broadcast (long inner loops)
    wide = np.repeat(top_left, fx, axis=1)
    virtual = np.broadcast_to(wide[:, None, :], (h + 1, fy, (w + 1) * fx)).reshape((h + 1) * fy, (w + 1) * fx)
    rows, cols = np.nonzero(~uniform)
    if len(rows):
        cells = virtual.reshape(h + 1, fy, w + 1, fx)
        cells[rows, :, cols, :] = _interpolate_cells(padded, rows, cols, fy, fx).transpose(2, 0, 1)
    return np.ascontiguousarray(virtual[fy // 2:fy // 2 + height, fx // 2:fx // 2 + width])


def _edge_pad(logits: np.ndarray) -> np.ndarray:
    """np.pad(logits, 1, mode="edge") over the spatial axes, without np.pad's per-call overhead."""
    c, h, w = logits.shape
    padded = np.empty((c, h + 2, w + 2), logits.dtype)
    padded[:, 1:-1, 1:-1] = logits
    padded[:, 0, 1:-1], padded[:, -1, 1:-1] = logits[:, 0], logits[:, -1]
    padded[:, :, 0], padded[:, :, -1] = padded[:, :, 1], padded[:, :, -2]
    return padded


def _interpolate_cells(padded: np.ndarray, rows: np.ndarray, cols: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """(fy, fx, n) labels of the n cells whose top-left padded source pixel is (rows, cols).

    Only the classes that can win somewhere in a cell are blended: inside a cell a class never
    exceeds its largest corner value, and the best class is at least the largest corner minimum,
    so a class whose largest corner is below that bound can never be (or tie) the maximum.
    Typically 2-4 of 11 classes remain. Cells are the last axis throughout, so every numpy pass
    runs one long inner loop instead of n loops of fx.
    """
    c, _, width = padded.shape
    flat = padded.reshape(c, -1)
    top_left = rows * width + cols
    corners = np.stack([np.take(flat, top_left + offset, axis=1) for offset in (0, 1, width, width + 1)])
    bound = corners.min(0).max(0)  # (n,): what the winner reaches at least, everywhere in the cell
    candidate = corners.max(0) >= bound  # (C, n)
    count = candidate.sum(0)
    few = count <= 3  # most boundary cells are between two or three classes: blend those three at most
    if few.all() or not few.any():
        return _blend_candidates(corners, candidate, int(count.max()), fy, fx)
    labels = np.empty((fy, fx, len(rows)), _label_dtype(c))
    for group in (np.nonzero(few)[0], np.nonzero(~few)[0]):
        labels[:, :, group] = _blend_candidates(corners[:, :, group], candidate[:, group],
                                                int(count[group].max()), fy, fx)
    return labels


def _candidate_classes(candidate: np.ndarray, keep: int) -> np.ndarray:
    """(keep, n) class ids: each cell's candidates in ascending order (the first-maximum rule holds),
    then copies of its first candidate, which can never beat or precede the original."""
    cells, class_ids = np.nonzero(candidate.T)  # grouped by cell, classes ascending within each
    count = np.bincount(cells, minlength=candidate.shape[1])
    start = np.cumsum(count) - count
    classes = np.broadcast_to(class_ids[start], (keep, candidate.shape[1])).copy()
    classes[np.arange(len(cells)) - start[cells], cells] = class_ids
    return classes


def _blend_candidates(corners: np.ndarray, candidate: np.ndarray, keep: int, fy: int, fx: int) -> np.ndarray:
    """(fy, fx, n) labels from (4, C, n) corner logits, blending `keep` candidate classes per cell."""
    n = corners.shape[2]
    classes = _candidate_classes(candidate, keep)  # (K, n)
    flat = classes * n + np.arange(n)  # flat indices into (C, n): plain takes beat take_along_axis here
    picked = np.take(corners.reshape(4, -1), flat, axis=1)[:, :, None, None, :]  # (4, K, 1, 1, n)
    wy = ((np.arange(fy, dtype=np.float32) + 0.5) / fy)[:, None, None]  # (fy, 1, 1)
    wx = ((np.arange(fx, dtype=np.float32) + 0.5) / fx)[:, None]  # (fx, 1)
    # along W first, then H, in PyTorch's order, so rounding matches its bilinear kernel where it can
    upper = (1 - wx) * picked[0] + wx * picked[1]  # (K, 1, fx, n)
    lower = (1 - wx) * picked[2] + wx * picked[3]
    blend = (1 - wy) * upper
    blend += wy * lower  # (K, fy, fx, n)
    best = first_argmax(blend)  # (fy, fx, n): the winning slot
    ids = classes.astype(_label_dtype(corners.shape[1])).ravel()
    return ids[best.astype(np.intp) * n + np.arange(n)]


def _every_pixel(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    channels_last = np.ascontiguousarray(logits.transpose(1, 2, 0))
    upsampled = cv2.resize(channels_last, (width, height), interpolation=cv2.INTER_LINEAR)
    if upsampled.ndim == 2:
        upsampled = upsampled[..., None]
    return first_argmax(np.ascontiguousarray(upsampled.transpose(2, 0, 1)))
