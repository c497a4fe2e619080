"""Foreign segmentation graphs as users export them, made here with small torch modules: one per
convention `edgeseg build --onnx` must read (NCHW/NHWC, float or uint8 input, logits, softmax or
int64 labels, full or 1/4 resolution, static or dynamic size, metadata_props), and the test's own
reference run of a file (numpy preprocessing, the file in ONNX Runtime, torch's bilinear upsampling),
written apart from edgeseg's."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = ("road", "car", "sky", "tree", "person")


class ToyNet(nn.Module):
    """conv -> (pool) -> 1x1 head, with the input and output conventions of the exporters it stands for."""

    def __init__(self, classes: int = 5, stride: int = 1, nhwc_in: bool = False, nhwc_out: bool = False,
                 softmax: bool = False, labels: bool = False, uint8_in: bool = False, aux: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.head = nn.Conv2d(16, classes, 1)
        self.aux_head = nn.Conv2d(16, classes, 1) if aux else None
        self.stride, self.nhwc_in, self.nhwc_out = stride, nhwc_in, nhwc_out
        self.softmax, self.labels, self.uint8_in = softmax, labels, uint8_in

    def forward(self, x):
        if self.uint8_in:  # normalization inside the graph: uint8 RGB in, as some exporters do
            x = (x.float() / 255 - 0.5) / 0.25
        if self.nhwc_in:
            x = x.permute(0, 3, 1, 2)
        y = F.relu(self.conv(x))
        if self.stride > 1:
            y = F.avg_pool2d(y, self.stride)
        out = self.head(y)
        if self.softmax:
            out = out.softmax(1)
        if self.labels:
            return out.argmax(1)
        if self.nhwc_out:
            out = out.permute(0, 2, 3, 1)
        return (out, self.aux_head(y)) if self.aux_head is not None else out


@dataclass(frozen=True)
class Convention:
    """One way a graph arrives, and what `edgeseg build --onnx` must be told about it."""

    name: str
    net: dict
    size: tuple[int, int] = (64, 96)
    flags: dict = field(default_factory=dict)  # Declared fields
    dynamic: bool = False  # dynamic batch, H and W
    metadata: dict | None = None
    rgb: bool = True
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    @property
    def nhwc_in(self) -> bool:
        return self.net.get("nhwc_in", False)


CONVENTIONS = [
    Convention("nchw_logits", {}, flags={"preset": "torchvision", "classes": ",".join(CLASSES)}),
    Convention("nhwc_keras", {"nhwc_in": True, "nhwc_out": True},
               flags={"channel_order": "rgb", "value_range": 255, "mean": (127.5,) * 3, "std": (127.5,) * 3,
                      "classes": ",".join(CLASSES)}, mean=(0.5,) * 3, std=(0.5,) * 3),
    Convention("uint8_inside", {"uint8_in": True, "nhwc_in": True}, flags={"channel_order": "rgb", "classes": ",".join(CLASSES)}),
    Convention("softmax", {"softmax": True, "stride": 2}, flags={"preset": "imagenet", "classes": ",".join(CLASSES)}),
    Convention("int64_labels", {"labels": True}, flags={"preset": "imagenet", "classes": ",".join(CLASSES)}),
    Convention("quarter_res", {"stride": 4}, flags={"preset": "segformer", "classes": ",".join(CLASSES)}),
    Convention("dynamic_hw", {"stride": 4}, dynamic=True,
               flags={"channel_order": "bgr", "value_range": 1, "mean": IMAGENET_MEAN[::-1],
                      "std": IMAGENET_STD[::-1], "classes": ",".join(CLASSES), "input_size": (64, 96)}, rgb=False,
               mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1]),
    Convention("metadata_props", {"stride": 2},
               metadata={"names": str(dict(enumerate(CLASSES))), "edgeseg.channel_order": "rgb",
                         "edgeseg.mean": json.dumps(IMAGENET_MEAN), "edgeseg.std": json.dumps(IMAGENET_STD),
                         "edgeseg.value_range": "1"}),
]


def export(path: Path, convention: Convention) -> Path:
    """The convention's graph as its exporter would write it."""
    net = ToyNet(**convention.net).eval()
    h, w = convention.size
    shape = (1, h, w, 3) if convention.nhwc_in else (1, 3, h, w)
    x = torch.randint(0, 256, shape, dtype=torch.uint8) if convention.net.get("uint8_in") else torch.randn(shape)
    axes = None
    if convention.dynamic:
        spatial = (1, 2) if convention.nhwc_in else (2, 3)
        axes = {"input": {0: "batch", spatial[0]: "height", spatial[1]: "width"}}
    outputs = ["out", "aux"] if convention.net.get("aux") else ["out"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"],
                          output_names=outputs, dynamic_axes=axes)
    if convention.metadata:
        model = onnx.load(str(path))
        for key, value in convention.metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(path))
    return path


def reference_labels(path: Path, convention: Convention, frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR -> class ids, as the graph's own code would compute them."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = []
    for frame in frames:
        x = frame[..., ::-1] if convention.rgb else frame
        if not convention.net.get("uint8_in"):
            x = (x.astype(np.float32) / 255 - np.float32(convention.mean)) / np.float32(convention.std)
        if not convention.nhwc_in:
            x = x.transpose(2, 0, 1)
        out = session.run(None, {"input": np.ascontiguousarray(x[None]).astype(
            np.uint8 if convention.net.get("uint8_in") else np.float32)})[0]
        if convention.net.get("labels"):
            labels.append(out[0])
            continue
        scores = torch.from_numpy(out)
        if convention.net.get("nhwc_out"):
            scores = scores.permute(0, 3, 1, 2)
        scores = F.interpolate(scores, size=frame.shape[:2], mode="bilinear", align_corners=False)
        labels.append(scores.argmax(1)[0].numpy())
    return np.stack(labels)
