"""INT8 as explicit quantization: a Q/DQ ONNX graph, the one INT8 artifact every backend can take.

Weights: per-channel symmetric INT8. Activations: per-tensor symmetric INT8 ("s8", zero point 0),
which is what TensorRT requires of Q/DQ scales, or asymmetric UINT8 ("u8") for ONNX Runtime on
x86, whose U8S8 kernels are the fast ones: DeepLabV3+ MobileNetV2 at 360x480 on this EPYC ran 2.03x
faster than FP32 as U8S8 but only 1.19x as S8S8 (tools/ort_int8_formats.py). Ranges come
from a `CalibrationSet` by minmax, entropy (KL) or percentile, and are cached under
`calibration/cache/` keyed by the graph's sha256, the calibration pixels and the method.

U8 graphs get reduced-range weights by default, [-64, 64] ("7-bit", ORT's `reduce_range`): on x86
CPUs without VNNI, ONNX Runtime's U8S8 kernels add products in pairs into a saturating int16
(`vpmaddubsw`), and full-range pairs (2*255*127) overflow it; 2*255*64 = 32640 fits, so the graph
computes the same int32 sums on AVX2, AVX-512, VNNI and AMX (`edgeseg.runtime.cpu`). Full range
(`reduce_range=False`) is for engines that only ever run where VNNI is. S8 graphs (TensorRT) keep
full range: TensorRT accumulates INT8 products in int32 (DP4A, tensor cores), with no int16 step.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from edgeseg.build.calibration import (
    CACHE_DIR,
    CalibrationSet,
    cache_path,
    cache_problem,
    discard_cache,
    ranges_problem,
    seal_cache,
)
from edgeseg.errors import BadInputError, EdgesegError, reraise_interrupt
from edgeseg.io import atomic_path, sha256_file

METHODS = ("minmax", "entropy", "percentile")
# Ops that stay in float: the fused preprocessing (Cast/Mul/Sub/Transpose on uint8 frames) and the
# ArgMax; quantizing them saves nothing and costs accuracy.
OP_TYPES = ["Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "Concat", "Resize", "AveragePool",
            "MaxPool", "GlobalAveragePool", "Clip", "Relu", "ReduceMean", "Sigmoid", "HardSigmoid"]


@dataclass
class QuantResult:
    path: str
    method: str
    calibration: dict
    cache: str
    cache_hit: bool
    excluded: list[str] = field(default_factory=list)  # nodes kept in float
    quantized_nodes: int = 0
    seconds: float = 0.0
    activations: str = "s8"
    reduce_range: bool = False  # weights in [-64, 64] (7-bit) instead of [-127, 127]
    widest_weight: int = 0  # the largest |int8 weight| feeding a Conv/ConvTranspose/Gemm/MatMul, after the rewrites
    folded_input: dict | None = None  # u8: the preprocessing folded into the first convolution (graph_rewrite)
    shared_concats: int = 0  # concats whose inputs took one scale, so they copy (qdq_rewrite)

    def summary(self) -> str:
        hit = "cached ranges" if self.cache_hit else f"calibrated on {self.calibration['images']} images"
        kept = f", {len(self.excluded)} nodes kept in fp32" if self.excluded else ""
        return f"quantized {Path(self.path).name} ({self.method}, {self.activations} activations, " \
               f"{self.weights} weights, {hit}{kept}) in {self.seconds:.1f}s"

    @property
    def weights(self) -> str:
        return "reduced-range (7-bit)" if self.reduce_range else "full-range (8-bit)"


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a CalibrationSet."""

    def __init__(self, calib: CalibrationSet, input_name: str) -> None:
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.rewind()

            def get_next(self):
                batch = next(self._it, None)
                return None if batch is None else {input_name: batch}

            def rewind(self):
                self._it = calib.batches()

            def __len__(self):
                return len(calib) // calib.batch

        self.reader = Reader()


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if name not in table:
        raise BadInputError(f"unknown calibration method '{name}'", f"choose one of {', '.join(METHODS)}")
    return table[name]


def qdq_from_onnx(src: str | os.PathLike, dst: str | os.PathLike, calib: CalibrationSet, method: str = "entropy",
                  exclude: Sequence[str] = (), activations: str = "s8", cache_root: Path = CACHE_DIR,
                  overwrite: bool = False, fold_input: bool | None = None,
                  reduce_range: bool | None = None) -> QuantResult:
    """Write a Q/DQ INT8 copy of the float graph `src` to `dst` (activations "s8" symmetric or "u8").

    `reduce_range` (default: with u8 activations) quantizes the weights to [-64, 64], so that ONNX
    Runtime's U8S8 kernels cannot saturate on x86 CPUs without VNNI; pass False only for engines that
    run on CPUs with AVX512-VNNI or AVX-VNNI alone. S8 graphs (TensorRT) are always full range.

    `fold_input` (default: with u8 activations) folds the fused preprocessing into the first
    convolution so that it reads the uint8 frame itself (`graph_rewrite.fold_preprocess`): on ONNX
    Runtime the preprocessing otherwise runs channels-last after its NHWC rewrite, 6-12 ms of
    broadcasts on Fast-SCNN at 360x480, more than all its INT8 convolutions.
    """
    import tempfile

    import onnx

    if activations not in ("s8", "u8"):
        raise BadInputError(f"unknown activation type '{activations}'", "use s8 (TensorRT) or u8 (ONNX Runtime on x86)")
    if reduce_range is None:
        reduce_range = activations == "u8"
    if reduce_range and activations == "s8":
        raise BadInputError("reduced-range weights are for ONNX Runtime's U8S8 kernels on x86, not s8 graphs",
                            "quantize s8 (TensorRT) graphs with full-range weights")
    if fold_input is None:
        fold_input = activations == "u8"
    if not fold_input:
        return _qdq(src, dst, calib, method, exclude, activations, cache_root, overwrite, None, reduce_range)
    from edgeseg.build.graph_rewrite import fold_preprocess

    model = onnx.load(str(src))
    folded = fold_preprocess(model)
    if folded is None:
        return _qdq(src, dst, calib, method, exclude, activations, cache_root, overwrite, None, reduce_range)
    with tempfile.TemporaryDirectory(prefix="edgeseg-fold-") as tmp:
        folded_src = Path(tmp) / "folded.onnx"
        onnx.save(model, str(folded_src))
        return _qdq(folded_src, dst, calib, method, exclude, activations, cache_root, overwrite, folded, reduce_range)


def _qdq(src, dst, calib, method, exclude, activations, cache_root, overwrite, folded, reduce_range) -> QuantResult:
    import numpy as np
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgeseg.build.qdq_rewrite import widest_int8_weight
    from edgeseg.runtime.cpu import SATURATION_FREE_WEIGHT

    start = time.perf_counter()
    calibrate_method = _method(method)
    model_sha = sha256_file(src)
    cache = cache_path(model_sha, calib, method, Path(cache_root))
    key = {"onnx_sha256": model_sha, "calibration": calib.describe(), "method": method}
    hit = _usable_cache(cache, key)
    input_name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    extra = {"ActivationSymmetric": activations == "s8", "WeightSymmetric": True, "CalibMovingAverage": False}
    if folded is not None:  # frame - zero_point at scale 1 is the frame itself: exact, and elided below
        extra["TensorQuantOverrides"] = {folded.centred: [{"scale": np.array(1.0, np.float32),
                                                           "zero_point": np.array(folded.zero_point, np.uint8)}]}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    exclude = list(dict.fromkeys([*edge_nodes(src), *exclude]))
    with atomic_path(dst, overwrite=overwrite) as tmp:
        def quantize() -> None:
            quantize_static(str(src), str(tmp), _Reader(calib, input_name).reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=OP_TYPES, per_channel=True, reduce_range=reduce_range,
                            activation_type=QuantType.QInt8 if activations == "s8" else QuantType.QUInt8,
                            weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude), calibrate_method=calibrate_method,
                            calibration_cache_path=str(cache), extra_options=extra)

        hit = _calibrate_or_reuse(quantize, cache, method, hit)
        folded_info, shared, model = _rewrite_qdq(tmp, folded)
        widest = widest_int8_weight(model)
        if reduce_range and widest > SATURATION_FREE_WEIGHT:  # a rewrite or ORT widened them: refuse to publish
            raise RuntimeError(f"reduced-range weights reach {widest} after quantization, past the "
                               f"{SATURATION_FREE_WEIGHT} that keeps ONNX Runtime's U8S8 kernels from saturating")
    if not hit:
        seal_cache(cache, key)
    nodes = model.graph.node
    quantized = sum(1 for n in nodes if n.op_type == "QuantizeLinear")
    present = {n.name for n in nodes}
    exclude = [name for name in exclude if name in present]  # the fold removes some preprocessing nodes
    return QuantResult(str(dst), method, calib.describe(), str(cache), hit, exclude, quantized,
                       time.perf_counter() - start, activations, reduce_range, widest, folded_info, shared)


def _usable_cache(cache: Path, key: dict) -> bool:
    """Whether the range cache can be used as it is; if not, say why and remove it (and its sidecar)
    so that ONNX Runtime calibrates afresh instead of reading it."""
    problem = cache_problem(cache, key)
    if problem is None:
        return True
    if os.path.lexists(cache) or os.path.lexists(cache.with_suffix(".key.json")):
        print(f"calibration cache {cache} {problem}; recalibrating")
        discard_cache(cache)
    return False


def _calibrate_or_reuse(quantize: Callable[[], None], cache: Path, method: str, hit: bool) -> bool:
    """Run `quantize` on the cached ranges when `hit`, else calibrate; returns whether the cache was used.

    A cache that passed `cache_problem` can still lack a tensor of this graph (crafted with the right
    key): ONNX Runtime then refuses it, and that means recalibrating, not a traceback. Fresh ranges are
    checked before the graph made from them is published: NaN or inf ranges become NaN scales."""
    if hit:
        try:
            quantize()
            return True
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reraise_interrupt(exc)
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            print(f"calibration cache {cache} does not fit this graph ({reason}); recalibrating")
            discard_cache(cache)
    quantize()
    problem = ranges_problem(cache, method)
    if problem:
        discard_cache(cache)
        raise EdgesegError(f"calibration produced unusable ranges: the cache {problem}",
                           "check the calibration images and the network's weights (a NaN activation makes "
                           "NaN ranges), or try another --calib-method")
    return False


def _rewrite_qdq(path: Path, folded):
    """The Q/DQ rewrites, in one load and one save: the uint8 frame feeds the first DequantizeLinear
    and the first convolution takes it in 2x2 blocks (when the preprocessing was folded), and concats
    share one scale. Returns the fold's description for the manifest, the concats changed, the model."""
    import onnx

    from edgeseg.build.graph_rewrite import elide_input_quantize
    from edgeseg.build.qdq_rewrite import blocks_into_first_conv, share_concat_scales

    model = onnx.load(str(path))
    info, elided = None, False
    if folded is not None:
        elided = elide_input_quantize(model, folded)
        info = {"conv": folded.conv, "zero_point": folded.zero_point, "frame_feeds_int8_directly": elided,
                "first_conv_on_2x2_blocks": elided and blocks_into_first_conv(model),
                "padding": f"the first convolution pads with grey {folded.zero_point} instead of the per-channel mean"}
    shared = share_concat_scales(model)
    if elided or shared:
        onnx.save(model, str(path))
    return info, shared, model


def edge_nodes(src: str | os.PathLike) -> list[str]:
    """The fused preprocessing (before the first convolution) and the tail after the classifier
    (logit upsampling, ArgMax): kept in float, because quantizing them only adds work at full
    resolution (ORT ran the preprocessing Mul as a QLinearMul 8 ms slower than in float, on Fast-SCNN
    at 360x480) and rounds the logits the label map is decided on."""
    import onnx

    nodes = list(onnx.load(str(src), load_external_data=False).graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "ConvTranspose")]
    if not convs:
        return []
    return [n.name for n in nodes[:convs[0]]] + [n.name for n in nodes[convs[-1] + 1:]]


def float_nodes(qdq_path: str | os.PathLike) -> dict[str, str]:
    """Nodes of a Q/DQ graph that compute in float: {name: "fp32 (<op>)"}.

    A node runs in INT8 when every activation input comes from a DequantizeLinear and every output
    goes to a QuantizeLinear (the runtime fuses the three); anything else computes in float.
    """
    import onnx

    graph = onnx.load(str(qdq_path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}
    producer = {out: node.op_type for node in graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    result = {}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        inputs = [i for i in node.input if i and i not in initializers and producer.get(i) != "Constant"]
        int8_in = bool(inputs) and all(producer.get(i) == "DequantizeLinear" for i in inputs)
        int8_out = all(consumers.get(o) and all(c == "QuantizeLinear" for c in consumers[o]) for o in node.output)
        if not (int8_in and int8_out):
            result[node.name] = f"fp32 ({node.op_type})"
    return result


def float_islands(qdq_path: str | os.PathLike) -> dict[str, int]:
    """Op types computing in float between INT8 layers, counted: each one is a dequantize and a
    requantize around it, the usual reason an INT8 graph is no faster than FP32."""
    import onnx

    graph = onnx.load(str(qdq_path), load_external_data=False).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    names = float_nodes(qdq_path)
    counts: dict[str, int] = {}
    for node in graph.node:
        if node.name in names and any(producer.get(i) == "DequantizeLinear" for i in node.input):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
