"""The second stage: RoIAlign over the pyramid, the box head and predictor, the mask head and predictor,
detection post-processing and the training losses (He et al. 2017), with torchvision's module names."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.maskrcnn import ops
from edgeseg.models.maskrcnn.matching import Matcher, PositiveNegativeSampler
from edgeseg.models.maskrcnn.rpn import ConvReLU as ConvNormReLU


def _per_image(values: torch.Tensor, per_image: list[torch.Tensor]) -> list[torch.Tensor]:
    """`values` cut into one part per image, as long as that image's tensor in `per_image`. One image keeps
    the whole tensor: a split by Python counts would be frozen into an exported graph, whose proposal and
    detection counts depend on the frame."""
    if len(per_image) == 1:
        return [values]
    return list(values.split([len(t) for t in per_image]))


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign of each box on the pyramid level its size maps to (FPN paper eq. 1: level 4 for a 224-pixel
    box), the levels' scales read off the feature sizes against the largest image, as torchvision does."""

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int = 2) -> None:
        super().__init__()
        self.featmap_names, self.output_size, self.sampling_ratio = featmap_names, output_size, sampling_ratio

    def forward(self, features: "dict[str, torch.Tensor]", boxes: list[torch.Tensor],
                image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        levels = [v for k, v in features.items() if k in self.featmap_names]
        largest = (max(s[0] for s in image_sizes), max(s[1] for s in image_sizes))
        scales = [2.0 ** round(math.log2(f.shape[-2] / largest[0])) for f in levels]
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        if torch.onnx.is_in_onnx_export():
            return self._exported(levels, scales, rois)
        if len(levels) == 1:
            return ops.roi_align(levels[0], rois, self.output_size, scales[0], self.sampling_ratio)
        target = self._levels(rois, scales)
        out = rois.new_zeros((rois.shape[0], levels[0].shape[1], self.output_size, self.output_size))
        for level, (feature, scale) in enumerate(zip(levels, scales)):
            index = torch.where(target == level)[0]
            if index.numel():
                out[index] = ops.roi_align(feature, rois[index], self.output_size, scale, self.sampling_ratio)
        return out


    @staticmethod
    def _levels(rois: torch.Tensor, scales: list[float]) -> torch.Tensor:
        k_min, k_max = int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
        size = torch.sqrt(ops.box_area(rois[:, 1:]))
        target = torch.floor(4 + torch.log2(size / 224) + torch.tensor(1e-6, dtype=size.dtype))
        return torch.clamp(target, min=k_min, max=k_max).to(torch.int64) - k_min

    def _exported(self, levels: list[torch.Tensor], scales: list[float], rois: torch.Tensor) -> torch.Tensor:
        """Every RoI aligned on every level, each kept from its own: a graph without data-dependent
        gathers, at the cost of aligning each RoI once per level (small beside the heads)."""
        from edgeseg.models.maskrcnn.export_ops import RoIAlignOp

        aligned = [RoIAlignOp.apply(f, rois, self.output_size, s, self.sampling_ratio) for f, s in zip(levels, scales)]
        if len(aligned) == 1:
            return aligned[0]
        target = self._levels(rois, scales)
        out = aligned[0] * (target == 0).to(rois.dtype)[:, None, None, None]
        for level in range(1, len(aligned)):
            out = out + aligned[level] * (target == level).to(rois.dtype)[:, None, None, None]
        return out


class TwoMLPHead(nn.Module):
    """v1's box head: two fully connected layers."""

    def __init__(self, in_features: int, representation: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation)
        self.fc7 = nn.Linear(representation, representation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


def _init_relu_convs(module: nn.Module) -> None:
    """torchvision's init of the heads' convolutions: He normal (fan out), zero bias."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class FastRCNNConvFCHead(nn.Sequential):
    """v2's box head: four conv-norm-ReLU, then one fully connected layer."""

    def __init__(self, channels: int, size: int, norm, convs: int = 4, representation: int = 1024) -> None:
        layers: list[nn.Module] = [ConvNormReLU(channels, channels, norm) for _ in range(convs)]
        layers += [nn.Flatten(), nn.Linear(channels * size * size, representation), nn.ReLU(inplace=True)]
        super().__init__(*layers)
        _init_relu_convs(self)


class FastRCNNPredictor(nn.Module):
    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


class MaskRCNNHeads(nn.Sequential):
    """Four 3x3 conv(-norm)-ReLU layers over the 14x14 RoI features."""

    def __init__(self, channels: int, layers: int = 4, norm=None) -> None:
        super().__init__(*[ConvNormReLU(256 if i else channels, 256, norm) for i in range(layers)])
        _init_relu_convs(self)


class MaskRCNNPredictor(nn.Sequential):
    """2x transposed conv to 28x28, then one mask logit map per class."""

    def __init__(self, channels: int, reduced: int, num_classes: int) -> None:
        super().__init__()
        self.conv5_mask = nn.ConvTranspose2d(channels, reduced, 2, 2, 0)
        self.relu = nn.ReLU(inplace=True)
        self.mask_fcn_logits = nn.Conv2d(reduced, num_classes, 1, 1, 0)
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.zeros_(param)


class RoIHeads(nn.Module):
    def __init__(self, box_roi_pool: MultiScaleRoIAlign, box_head: nn.Module, box_predictor: FastRCNNPredictor,
                 mask_roi_pool: MultiScaleRoIAlign, mask_head: nn.Module, mask_predictor: MaskRCNNPredictor, *,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, detections_per_img: int = 100,
                 batch_size_per_image: int = 512, positive_fraction: float = 0.25) -> None:
        super().__init__()
        self.box_roi_pool, self.box_head, self.box_predictor = box_roi_pool, box_head, box_predictor
        self.mask_roi_pool, self.mask_head, self.mask_predictor = mask_roi_pool, mask_head, mask_predictor
        self.box_coder = ops.BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.matcher = Matcher(0.5, 0.5, allow_low_quality_matches=False)
        self.sampler = PositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img

    def forward(self, features, proposals: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                targets: list[dict] | None = None):
        if self.training:
            return self._train_step(features, proposals, image_sizes, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_sizes))
        class_logits, box_deltas = self.box_predictor(box_features)
        results = self.postprocess_detections(class_logits, box_deltas, proposals, image_sizes)
        mask_logits = self.mask_logits(features, [r["boxes"] for r in results], image_sizes)
        labels = torch.cat([r["labels"] for r in results])
        probs = mask_logits[torch.arange(labels.shape[0]), labels][:, None].sigmoid()
        for result, prob in zip(results, _per_image(probs, [r["labels"] for r in results])):
            result["masks"] = prob
        return results, {}

    def mask_logits(self, features, boxes: list[torch.Tensor], image_sizes) -> torch.Tensor:
        return self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_sizes)))

    def postprocess_detections(self, class_logits: torch.Tensor, box_deltas: torch.Tensor,
                               proposals: list[torch.Tensor], image_sizes) -> list[dict]:
        """Per class boxes and softmax scores; above `score_thresh`, NMS per class, the best
        `detections_per_img` kept (torchvision's rules)."""
        num_classes = class_logits.shape[-1]
        boxes_all = self.box_coder.decode(box_deltas, torch.cat(proposals))
        scores_all = F.softmax(class_logits, -1)
        results = []
        for boxes, scores, size in zip(_per_image(boxes_all, proposals), _per_image(scores_all, proposals),
                                       image_sizes):
            boxes = ops.clip_boxes_to_image(boxes, size)
            labels = torch.arange(num_classes, device=boxes.device).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = ops.remove_small_boxes(boxes, 1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            results.append({"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]})
        return results

    def _train_step(self, features, proposals, image_sizes, targets):
        """Proposals (plus the ground truth) matched at IoU 0.5, 512 sampled per image; classification,
        box and mask losses."""
        proposals, labels, matched, regression = self._sample(proposals, targets)
        class_logits, box_deltas = self.box_predictor(self.box_head(self.box_roi_pool(features, proposals,
                                                                                      image_sizes)))
        labels_all, regression_all = torch.cat(labels), torch.cat(regression)
        loss_classifier = F.cross_entropy(class_logits, labels_all)
        positive = torch.where(labels_all > 0)[0]
        box_deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)
        loss_box = F.smooth_l1_loss(box_deltas[positive, labels_all[positive]], regression_all[positive],
                                    beta=1 / 9, reduction="sum") / labels_all.numel()
        pos_boxes = [p[lab > 0] for p, lab in zip(proposals, labels)]
        pos_matched = [m[lab > 0] for m, lab in zip(matched, labels)]
        mask_logits = self.mask_logits(features, pos_boxes, image_sizes)
        loss_mask = self._mask_loss(mask_logits, pos_boxes, pos_matched, targets)
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box, "loss_mask": loss_mask}

    def _sample(self, proposals, targets):
        out_proposals, out_labels, out_matched, out_regression = [], [], [], []
        for boxes, target in zip(proposals, targets):
            gt_boxes, gt_labels = target["boxes"], target["labels"]
            boxes = torch.cat([boxes, gt_boxes])
            if gt_boxes.numel() == 0:
                matched = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
                labels = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
                matched_boxes = torch.zeros_like(boxes)
            else:
                raw = self.matcher(ops.box_iou(gt_boxes, boxes))
                matched = raw.clamp(min=0)
                labels = gt_labels[matched].to(torch.int64)
                labels[raw == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[raw == Matcher.BETWEEN_THRESHOLDS] = -1
                matched_boxes = gt_boxes[matched]
            positive, negative = self.sampler([labels])
            keep = torch.where(positive[0] | negative[0])[0]
            boxes, labels, matched = boxes[keep], labels[keep], matched[keep]
            out_proposals.append(boxes)
            out_labels.append(labels)
            out_matched.append(matched)
            out_regression.append(self.box_coder.encode(matched_boxes[keep], boxes))
        return out_proposals, out_labels, out_matched, out_regression

    @staticmethod
    def _mask_loss(mask_logits, boxes, matched, targets) -> torch.Tensor:
        """Binary cross-entropy of each positive's class channel against its ground-truth mask cropped to
        the proposal (RoIAlign of the mask; a fixed 2x2 sampling where torchvision adapts it to the box)."""
        size = mask_logits.shape[-1]
        mask_targets, labels = [], []
        for image, (b, m, target) in enumerate(zip(boxes, matched, targets)):
            if b.numel() == 0:
                continue
            gt_masks = target["masks"][:, None].to(b.dtype)
            rois = torch.cat([m[:, None].to(b.dtype), b], dim=1)
            mask_targets.append(ops.roi_align(gt_masks, rois, size, 1.0, 2)[:, 0])
            labels.append(target["labels"][m])
        if not mask_targets:
            return mask_logits.sum() * 0
        labels, mask_targets = torch.cat(labels), torch.cat(mask_targets)
        chosen = mask_logits[torch.arange(labels.numel(), device=labels.device), labels]
        return F.binary_cross_entropy_with_logits(chosen, mask_targets)
