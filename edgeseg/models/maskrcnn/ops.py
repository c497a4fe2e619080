"""The detection operators Mask R-CNN needs, in plain torch: box arithmetic, NMS and RoIAlign.

torchvision implements nms and roi_align as compiled kernels, and its wheels cannot be installed beside
the CPU torch edgeseg runs on, so these are written here, to torchvision's semantics (the fidelity tests
compare the whole network against torchvision's outputs):
- `nms` is torchvision's greedy NMS (by decreasing score, a box is dropped when its IoU with a kept box
  is above the threshold), computed as a fixed point of the "suppressed by a kept, higher box" rule
  over the IoU matrix, so there is no Python loop over boxes; the fixed point is the greedy result.
- `roi_align` is torchvision's RoIAlign (aligned=False by default, a fixed sampling ratio): the
  bilinear samples come from `grid_sample` with border padding, which clamps exactly as torchvision's
  kernel does for samples within one pixel of the border, and samples further out are zeroed, as there.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters held as buffers, as torchvision's: COCO
    checkpoints of the v1 network carry these four tensors per norm and no `num_batches_tracked`."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)  # a BatchNorm checkpoint loads here too
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box of `a` (N x 4, x0 y0 x1 y1) with every box of `b` (M x 4): N x M."""
    top_left = torch.max(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def clip_boxes_to_image(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices of the boxes at least `min_size` wide and high."""
    wide = (boxes[:, 2] - boxes[:, 0]) >= min_size
    high = (boxes[:, 3] - boxes[:, 1]) >= min_size
    return torch.where(wide & high)[0]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes greedy NMS keeps, by decreasing score (torchvision.ops.nms)."""
    order = torch.argsort(scores, descending=True, stable=True)
    if order.numel() <= 1:
        return order
    sorted_boxes = boxes[order]
    overlaps = box_iou(sorted_boxes, sorted_boxes) > iou_threshold
    overlaps = torch.triu(overlaps, diagonal=1)  # only a higher-scored box suppresses
    keep = torch.ones(order.numel(), dtype=torch.bool, device=boxes.device)
    while True:  # box j's fate depends only on boxes before it: converges within the longest chain
        suppressed = (overlaps & keep[:, None]).any(dim=0)
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            return order[keep]
        keep = new_keep


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within each group (class or pyramid level), kept indices by decreasing score."""
    if torch.onnx.is_in_onnx_export():
        from edgeseg.models.maskrcnn.export_ops import batched_nms as exported

        return exported(boxes, scores, groups, iou_threshold)
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    kept = [torch.where(groups == g)[0] for g in torch.unique(groups)]
    kept = torch.cat([idx[nms(boxes[idx], scores[idx], iou_threshold)] for idx in kept])
    return kept[torch.argsort(scores[kept], descending=True, stable=True)]


class BoxCoder:
    """Boxes as deltas from reference boxes (R-CNN's parametrization), torchvision's arithmetic."""

    def __init__(self, weights: tuple[float, float, float, float],
                 clip: float = math.log(1000.0 / 16)) -> None:
        self.weights = weights
        self.clip = clip

    def encode(self, targets: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        wx, wy, ww, wh = self.weights
        ref_w = references[:, 2] - references[:, 0]
        ref_h = references[:, 3] - references[:, 1]
        ref_x = references[:, 0] + 0.5 * ref_w
        ref_y = references[:, 1] + 0.5 * ref_h
        gt_w = targets[:, 2] - targets[:, 0]
        gt_h = targets[:, 3] - targets[:, 1]
        gt_x = targets[:, 0] + 0.5 * gt_w
        gt_y = targets[:, 1] + 0.5 * gt_h
        return torch.stack((wx * (gt_x - ref_x) / ref_w, wy * (gt_y - ref_y) / ref_h,
                            ww * torch.log(gt_w / ref_w), wh * torch.log(gt_h / ref_h)), dim=1)

    def decode(self, deltas: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """deltas R x (4k) against references R x 4 -> boxes R x k x 4."""
        references = references.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        widths = references[:, 2] - references[:, 0]
        heights = references[:, 3] - references[:, 1]
        ctr_x = references[:, 0] + 0.5 * widths
        ctr_y = references[:, 1] + 0.5 * heights
        dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=self.clip)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=self.clip)
        pred_x = dx * widths[:, None] + ctr_x[:, None]
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * (torch.exp(dw) * widths[:, None])
        half_h = 0.5 * (torch.exp(dh) * heights[:, None])
        boxes = torch.stack((pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h), dim=2)
        return boxes


ROI_CHUNK = 256  # RoIs sampled at once: bounds grid_sample's output (C x chunk x samples) in memory


def roi_align(features: torch.Tensor, rois: torch.Tensor, output_size: int, spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = False) -> torch.Tensor:
    """RoIAlign of `rois` (K x 5: image index, x0, y0, x1, y1 in input pixels) over N x C x H x W
    features -> K x C x S x S, with `sampling_ratio` x `sampling_ratio` bilinear samples per bin."""
    if sampling_ratio < 1:
        raise ValueError("roi_align here takes a fixed sampling ratio (torchvision's Mask R-CNN uses 2)")
    n, c, h, w = features.shape
    out = features.new_zeros((rois.shape[0], c, output_size, output_size))
    for image in range(n):
        index = torch.where(rois[:, 0] == image)[0]
        for start in range(0, index.numel(), ROI_CHUNK):
            part = index[start:start + ROI_CHUNK]
            out[part] = _align_one_image(features[image:image + 1], rois[part, 1:], output_size, spatial_scale,
                                         sampling_ratio, aligned)
    return out


def _align_one_image(feature: torch.Tensor, boxes: torch.Tensor, size: int, scale: float, ratio: int,
                     aligned: bool) -> torch.Tensor:
    _, c, h, w = feature.shape
    k = boxes.shape[0]
    offset = 0.5 if aligned else 0.0
    start = boxes[:, :2] * scale - offset  # K x 2 (x, y)
    extent = boxes[:, 2:] * scale - offset - start
    if not aligned:
        extent = extent.clamp(min=1.0)
    bin_size = extent / size
    steps = (torch.arange(size * ratio, dtype=feature.dtype, device=feature.device) + 0.5) / ratio  # in bins
    xs = start[:, 0, None] + steps[None, :] * bin_size[:, 0, None]  # K x (S*r)
    ys = start[:, 1, None] + steps[None, :] * bin_size[:, 1, None]
    valid = ((xs >= -1.0) & (xs <= w))[:, None, :] & ((ys >= -1.0) & (ys <= h))[:, :, None]  # K x Sr x Sr
    gx = (2 * xs + 1) / w - 1  # grid_sample's normalized coordinates (align_corners=False)
    gy = (2 * ys + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # K x Sr x Sr x 2
    sampled = F.grid_sample(feature, grid.reshape(1, k * size * ratio, size * ratio, 2), mode="bilinear",
                            padding_mode="border", align_corners=False)  # 1 x C x K*Sr x Sr
    sampled = sampled.reshape(c, k, size * ratio, size * ratio).transpose(0, 1) * valid[:, None].to(feature.dtype)
    return F.avg_pool2d(sampled, ratio)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, padding: int = 1) -> torch.Tensor:
    """Per-instance M x M mask probabilities (K x 1 x M x M) pasted into K x 1 x H x W images at their boxes,
    torchvision's way: the mask padded by one cell, its box grown to match and rounded to integers, the mask
    resized bilinearly to the box. One resize per instance (at most the detections per image)."""
    k, m = masks.shape[0], masks.shape[-1]
    out = masks.new_zeros((k, 1, height, width))
    if k == 0:
        return out
    grown = F.pad(masks, (padding,) * 4)
    scale = (m + 2 * padding) / m
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    centre = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    grown_boxes = torch.cat((centre - half, centre + half), dim=1).to(torch.int64).tolist()
    for i, (x0, y0, x1, y1) in enumerate(grown_boxes):
        bw, bh = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        resized = F.interpolate(grown[i:i + 1], size=(bh, bw), mode="bilinear", align_corners=False)[0, 0]
        cx0, cx1 = max(x0, 0), min(x1 + 1, width)
        cy0, cy1 = max(y0, 0), min(y1 + 1, height)
        if cx1 > cx0 and cy1 > cy0:
            out[i, 0, cy0:cy1, cx0:cx1] = resized[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    return out
