"""Mask R-CNN as one static ONNX graph for the engines: a uint8 BGR frame in (N=1, H x W x 3, as the
semantic engines take it), the normalization fused, the batch padding fixed at export, proposals, RoIAlign
and NMS as ONNX operators (`export_ops`); out: up to `detections_per_img` boxes (x0 y0 x1 y1, frame
pixels), labels, scores and 28 x 28 mask probabilities per detection. Pasting the masks into the frame
stays on the host (`paste_masks`): a resize per detection is cheaper there than inside the graph."""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import BadInputError
from edgeseg.models.preprocess import Preprocess

OUTPUTS = ("boxes", "labels", "scores", "masks")
OPSET = 17  # RoiAlign's output_half_pixel mode needs 16; the TorchScript exporter's newest is 17


class DeployMaskRCNN(nn.Module):
    def __init__(self, model: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        transform = model.transform
        if math.isclose(min(transform.min_size[-1] / min(size), transform.max_size / max(size)), 1.0) is False:
            raise BadInputError(f"the network resizes {size[0]}x{size[1]} frames (min_size {transform.min_size[-1]}, "
                                f"max_size {transform.max_size})",
                                f"build it with min_size={min(size)} and max_size={max(size)} to export at its size")
        self.model, self.size = model.eval(), tuple(size)
        self.preprocess = Preprocess(transform.mean, transform.std)
        stride = transform.size_divisible
        self.padded = tuple(int(math.ceil(s / stride) * stride) for s in size)
        self.eval()  # the exporter restores the wrapper's mode afterwards, and with it the network's

    def forward(self, frames: torch.Tensor):
        x = self.preprocess(frames)
        x = F.pad(x, (0, self.padded[1] - self.size[1], 0, self.padded[0] - self.size[0]))
        features = self.model.backbone(x)
        proposals, _ = self.model.rpn(self.padded, [self.size], features)
        results, _ = self.model.roi_heads(features, proposals, [self.size])
        r = results[0]
        return r["boxes"], r["labels"], r["scores"], r["masks"][:, 0]


def at_size(model: nn.Module, size: tuple[int, int]) -> nn.Module:
    """`model` set to take frames of `size` (H, W) as they are: its resize step becomes the identity at that
    size (min_size/max_size are the transform's only size-dependent state; the anchors follow the padded
    frame). A network trained at another size then sees its objects at another scale, as torchvision's
    would with those options."""
    model.transform.min_size, model.transform.max_size = (min(size),), max(size)
    return model


def set_counts(model: nn.Module, proposals: int | None = None, detections: int | None = None,
               min_score: float | None = None) -> nn.Module:
    """The inference budget of `model`: proposals kept per pyramid level before NMS and in all after it
    (torchvision's rpn_pre/post_nms_top_n_test; its 320 px MobileNet detector uses 150), detections per frame
    and the lowest score reported. The box head runs on every proposal and the mask head on every
    detection, so these set most of the time a frame takes; None keeps the network's own."""
    if proposals is not None:
        model.rpn._pre_nms_top_n = {**model.rpn._pre_nms_top_n, "testing": proposals}
        model.rpn._post_nms_top_n = {**model.rpn._post_nms_top_n, "testing": proposals}
    if detections is not None:
        model.roi_heads.detections_per_img = detections
    if min_score is not None:
        model.roi_heads.score_thresh = min_score
    return model


def export_maskrcnn(model: nn.Module, path: str | Path, size: tuple[int, int]) -> Path:
    """Write the static graph of `model` at frame size `size` (H, W) to `path` (TorchScript exporter:
    it is the one that reads the operators' ONNX symbolics)."""
    import onnx

    deploy = DeployMaskRCNN(model, size)
    frame = torch.zeros((1, *size, 3), dtype=torch.uint8)
    buffer = io.BytesIO()
    # the tracer warns at every data-dependent branch and loop bound; export_ops and the fixed sizes above
    # are what make those constant by design, and the graph is checked against the network in the tests
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # "legacy TorchScript-based export": chosen
        torch.onnx.export(deploy, (frame,), buffer, dynamo=False, opset_version=OPSET, input_names=["frames"],
                          output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "detections"} for name in OUTPUTS})
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    path = Path(path)
    onnx.save(proto, path)
    return path
