"""INT8 for the Mask R-CNN graph: the backbone and the feature pyramid in INT8 (Q/DQ, calibrated on real
frames like the semantic graphs), the proposal network and the box and mask heads kept in float.

The backbone and the pyramid are where the convolutions over the whole frame are; the heads see a few
hundred 7x7 or 14x14 crops, and their outputs become coordinates, scores that NMS ranks, and mask edges,
where INT8's rounding moves what is reported. NVIDIA's Detectron2 sample quantizes the same split. The
node names of the exported graph say which part a node belongs to (`/backbone/...`).

Calibration is min/max: ONNX Runtime's calibrators record every tensor of the graph, and the heads'
tensors change length with the frame's proposals and detections, which its histogram (entropy,
percentile) collectors cannot stack."""

from __future__ import annotations

from pathlib import Path

BACKBONE_PREFIX = "/backbone/"


def float_nodes(onnx_path: str | Path) -> list[str]:
    """Every node outside the backbone and the pyramid: kept in float."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [node.name for node in graph.node if not node.name.startswith(BACKBONE_PREFIX)]


def quantize_maskrcnn(onnx_path: str | Path, out_path: str | Path, calib, method: str = "minmax",
                      activations: str = "u8", cache_root: Path | None = None, overwrite: bool = False):
    """Write the Q/DQ copy of an exported Mask R-CNN graph (`edgeseg.models.maskrcnn.deploy`) with the
    backbone and the pyramid in INT8; `calib` is an `edgeseg.build.calibration.CalibrationSet` of frames at
    the graph's size. u8 activations with 7-bit weights run exactly on every x86 CPU (docs/int8.md)."""
    from edgeseg.build.calibration import CACHE_DIR
    from edgeseg.build.quantize import qdq_from_onnx

    return qdq_from_onnx(onnx_path, out_path, calib, method, exclude=float_nodes(onnx_path), activations=activations,
                         cache_root=cache_root or CACHE_DIR, overwrite=overwrite)
