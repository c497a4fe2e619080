"""The detection operators as ONNX operators when the network is exported: NonMaxSuppression and
RoiAlign (opset 16's `output_half_pixel`, torchvision's aligned=False), which ONNX Runtime, OpenVINO and
TensorRT's parser implement natively. In eager mode each is the plain-torch operator of `ops`, so the
exported graph and the PyTorch network compute the same thing; the parity check at build time holds
them to it. Only the TorchScript exporter reads these `symbolic` functions."""

from __future__ import annotations

import torch

from edgeseg.models.maskrcnn import ops


def exporting() -> bool:
    return torch.onnx.is_in_onnx_export()


class NMSOp(torch.autograd.Function):
    """Indices kept by greedy NMS, by decreasing score: ONNX NonMaxSuppression with one batch and class."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
        return ops.nms(boxes, scores, iou_threshold)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold):
        boxes = g.op("Unsqueeze", boxes, g.op("Constant", value_t=torch.tensor([0], dtype=torch.int64)))
        scores = g.op("Unsqueeze", scores, g.op("Constant", value_t=torch.tensor([0, 1], dtype=torch.int64)))
        limit = g.op("Constant", value_t=torch.tensor([2 ** 31 - 1], dtype=torch.int64))
        iou = g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32))
        selected = g.op("NonMaxSuppression", boxes, scores, limit, iou)  # K x (batch, class, box)
        column = g.op("Gather", selected, g.op("Constant", value_t=torch.tensor([2], dtype=torch.int64)), axis_i=1)
        return g.op("Squeeze", column, g.op("Constant", value_t=torch.tensor([1], dtype=torch.int64)))


class RoIAlignOp(torch.autograd.Function):
    """RoIAlign (aligned=False, fixed sampling ratio) of K x 5 rois: ONNX RoiAlign, opset 16."""

    @staticmethod
    def forward(ctx, features, rois, output_size: int, spatial_scale: float, sampling_ratio: int):
        return ops.roi_align(features, rois, output_size, spatial_scale, sampling_ratio)

    @staticmethod
    def symbolic(g, features, rois, output_size, spatial_scale, sampling_ratio):
        index = g.op("Gather", rois, g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64)), axis_i=1)
        index = g.op("Cast", index, to_i=7)  # int64
        boxes = g.op("Slice", rois, g.op("Constant", value_t=torch.tensor([1], dtype=torch.int64)),
                     g.op("Constant", value_t=torch.tensor([5], dtype=torch.int64)),
                     g.op("Constant", value_t=torch.tensor([1], dtype=torch.int64)))
        return g.op("RoiAlign", features, boxes, index, coordinate_transformation_mode_s="output_half_pixel",
                    mode_s="avg", output_height_i=output_size, output_width_i=output_size,
                    sampling_ratio_i=sampling_ratio, spatial_scale_f=spatial_scale)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS within groups as one NMS: each group's boxes shifted past every other's (torchvision's
    coordinate trick), which a static graph can hold."""
    offsets = groups.to(boxes.dtype) * (boxes.max() + 1)
    return NMSOp.apply(boxes + offsets[:, None], scores, iou_threshold)
