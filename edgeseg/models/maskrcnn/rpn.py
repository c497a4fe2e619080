"""Anchors and the region proposal network (Ren et al. 2015), torchvision's arithmetic and names."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.maskrcnn import ops
from edgeseg.models.maskrcnn.matching import Matcher, PositiveNegativeSampler


class AnchorGenerator(nn.Module):
    """Anchors of each size and aspect ratio at every cell of each pyramid level (one size tuple per level)."""

    def __init__(self, sizes: tuple[tuple[int, ...], ...], aspect_ratios: tuple[tuple[float, ...], ...]) -> None:
        super().__init__()
        self.sizes, self.aspect_ratios = sizes, aspect_ratios
        self.cell_anchors = [self._cell(s, a) for s, a in zip(sizes, aspect_ratios)]

    @staticmethod
    def _cell(scales, aspect_ratios) -> torch.Tensor:
        scales = torch.as_tensor(scales, dtype=torch.float32)
        ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(a) for s, a in zip(self.sizes, self.aspect_ratios)]

    def forward(self, image_size: tuple[int, int], features: list[torch.Tensor]) -> torch.Tensor:
        """Anchors (A x 4) for a batch padded to `image_size`, level by level, cell by cell."""
        anchors = []
        for feature, cell in zip(features, self.cell_anchors):
            gh, gw = feature.shape[-2:]
            stride_h, stride_w = image_size[0] // gh, image_size[1] // gw
            device = feature.device
            shift_x = torch.arange(0, gw, dtype=torch.int32, device=device) * stride_w
            shift_y = torch.arange(0, gh, dtype=torch.int32, device=device) * stride_h
            shift_y, shift_x = torch.meshgrid(shift_y, shift_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts.view(-1, 1, 4) + cell.to(device).view(1, -1, 4)).reshape(-1, 4))
        return torch.cat(anchors).to(features[0].dtype)


class ConvReLU(nn.Sequential):
    """torchvision's 3x3 Conv2dNormActivation: conv (with a bias only without a norm), norm, ReLU; the RPN
    head's has no norm, v2's box and mask heads do."""

    def __init__(self, cin: int, cout: int, norm=None) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=norm is None)]
        if norm is not None:
            layers.append(norm(cout))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class RPNHead(nn.Module):
    """3x3 conv(s) then per-anchor objectness and box deltas (v2 has two convs: conv_depth=2)."""

    def __init__(self, channels: int, num_anchors: int, conv_depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(*[ConvReLU(channels, channels) for _ in range(conv_depth)])
        self.cls_logits = nn.Conv2d(channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(channels, num_anchors * 4, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        logits, deltas = [], []
        for feature in features:
            t = self.conv(feature)
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def flatten_predictions(logits: list[torch.Tensor], deltas: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level N x A*C x H x W maps -> N x (sum H*W*A) x C, in the anchors' order (cell-major, then anchor)."""
    flat_logits, flat_deltas = [], []
    for logit, delta in zip(logits, deltas):
        n, a, h, w = logit.shape
        flat_logits.append(logit.view(n, a, 1, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 1))
        flat_deltas.append(delta.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
    return torch.cat(flat_logits, dim=1), torch.cat(flat_deltas, dim=1)


class RegionProposalNetwork(nn.Module):
    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, *, fg_iou_thresh: float = 0.7,
                 bg_iou_thresh: float = 0.3, batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int], nms_thresh: float = 0.7,
                 score_thresh: float = 0.0) -> None:
        super().__init__()
        self.anchor_generator, self.head = anchor_generator, head
        self.box_coder = ops.BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = PositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n, self._post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_thresh, self.score_thresh, self.min_size = nms_thresh, score_thresh, 1e-3

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def forward(self, padded_size: tuple[int, int], image_sizes: list[tuple[int, int]],
                features: "dict[str, torch.Tensor]", targets: list[dict] | None = None):
        levels = list(features.values())
        logits, deltas = self.head(levels)
        anchors = self.anchor_generator(padded_size, levels)
        per_level = [o[0].numel() for o in logits]
        objectness, box_deltas = flatten_predictions(logits, deltas)
        n = objectness.shape[0]
        proposals = self.box_coder.decode(box_deltas.detach().reshape(-1, 4), anchors.repeat(n, 1)).view(n, -1, 4)
        boxes = self.filter_proposals(proposals, objectness.detach().reshape(n, -1), image_sizes, per_level)
        losses = {}
        if self.training:
            losses = self.loss(objectness.reshape(-1), box_deltas.reshape(-1, 4), anchors, targets)
        return boxes, losses

    def filter_proposals(self, proposals: torch.Tensor, objectness: torch.Tensor,
                         image_sizes: list[tuple[int, int]], per_level: list[int]) -> list[torch.Tensor]:
        """Top-n anchors of each level by objectness, clipped, small and low ones dropped, NMS per level."""
        n = proposals.shape[0]
        levels = torch.cat([torch.full((k,), i, dtype=torch.int64, device=proposals.device)
                            for i, k in enumerate(per_level)]).reshape(1, -1).expand_as(objectness)
        top, offset = [], 0
        for scores in objectness.split(per_level, 1):
            k = min(self._pre_nms_top_n[self._mode()], scores.shape[1])
            top.append(scores.topk(k, dim=1)[1] + offset)
            offset += scores.shape[1]
        top_idx = torch.cat(top, dim=1)
        batch = torch.arange(n, device=proposals.device)[:, None]
        objectness, levels, proposals = objectness[batch, top_idx], levels[batch, top_idx], proposals[batch, top_idx]
        results = []
        for boxes, scores, level, size in zip(proposals, torch.sigmoid(objectness), levels, image_sizes):
            boxes = ops.clip_boxes_to_image(boxes, size)
            keep = ops.remove_small_boxes(boxes, self.min_size)
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep = torch.where(scores >= self.score_thresh)[0]
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep = ops.batched_nms(boxes, scores, level, self.nms_thresh)[: self._post_nms_top_n[self._mode()]]
            results.append(boxes[keep])
        return results

    def loss(self, objectness: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
             targets: list[dict]) -> dict[str, torch.Tensor]:
        """Objectness BCE and smooth-L1 box loss over 256 sampled anchors per image (half positive at most)."""
        labels, regression = [], []
        for target in targets:
            gt = target["boxes"]
            if gt.numel() == 0:
                labels.append(torch.zeros(anchors.shape[0], device=anchors.device))
                regression.append(torch.zeros_like(anchors))
                continue
            matched = self.matcher(ops.box_iou(gt, anchors))
            label = (matched >= 0).to(torch.float32)
            label[matched == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(label)
            regression.append(self.box_coder.encode(gt[matched.clamp(min=0)], anchors))
        positive, negative = self.sampler(labels)
        positive = torch.where(torch.cat(positive))[0]
        sampled = torch.cat([positive, torch.where(torch.cat(negative))[0]])
        labels, regression = torch.cat(labels), torch.cat(regression)
        box_loss = F.smooth_l1_loss(deltas[positive], regression[positive], beta=1 / 9,
                                    reduction="sum") / max(1, sampled.numel())
        objectness_loss = F.binary_cross_entropy_with_logits(objectness[sampled], labels[sampled])
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss}
