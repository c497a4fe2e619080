"""The mIoU budget of an INT8 build: keep the most quantization-sensitive layers in float until the
drop against FP32, measured on a held-out split, fits `--max-miou-drop` points, or say that it cannot.

Backend-neutral pieces live here: the held-out frames and labels (`ValidationSet`), a ranking of
Q/DQ graph nodes by the signal-to-quantization-noise they lose (`rank_qdq_nodes`), and the search
over "keep the k most sensitive in float" (`restore_until_within`). Each backend supplies the
function that builds and scores its engine for a given set of float layers; OpenVINO uses NNCF's own
accuracy control instead, which ranks and restores the same way on the IR.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgeseg.data.class_map import ClassMap, read_class_map, require_same_classes
from edgeseg.errors import BadInputError
from edgeseg.measure.evaluate import EvalSample, Predictor, evaluate
from edgeseg.runtime.frames import resize_to_input


@dataclass
class ValidationSet:
    """Held-out frames at the engine's input size with their full-size labels, loaded once.

    With a `class_map` the model's classes are not the dataset's: its predictions are mapped and scored
    in the dataset's classes, as `edgeseg eval --class-map` scores them."""

    spec: str
    frames: np.ndarray  # (N, H, W, 3) uint8 BGR
    labels: list[np.ndarray]  # full-size label maps
    num_classes: int  # the dataset's (the labels')
    ignore_index: int
    class_map: ClassMap | None = None

    def miou(self, predict: Predictor, indices: Sequence[int] | None = None) -> float:
        """mIoU in percent of the frames at `indices` (NNCF validates subsets), scored at label
        resolution by the loop `edgeseg eval` uses. The frames are at input size already."""
        picked = range(len(self.frames)) if indices is None else indices
        samples = [EvalSample(self.frames[i], self.labels[i], str(i)) for i in picked]
        if self.class_map is not None:
            return 100.0 * evaluate(predict, samples, self.class_map.model_classes, self.ignore_index,
                                    class_map=self.class_map).metrics.miou
        classes = [str(c) for c in range(self.num_classes)]
        return 100.0 * evaluate(predict, samples, classes, self.ignore_index).metrics.miou

    def class_map_record(self) -> dict | None:
        """What the budget report says about the class map (None without one)."""
        return None if self.class_map is None else self.class_map.to_dict()


def open_validation(spec: str | None, size: tuple[int, int], num_classes: int, limit: int | None = None,
                    progress: bool = True, *, class_map: str | None = None,
                    model_classes: Sequence[str] | None = None) -> ValidationSet:
    """The held-out frames the budget measures on: the first `limit` images of `spec` (None: all).

    `num_classes` and `model_classes` are the model's; with `model_classes` the dataset's must be the
    same names too. `class_map` (a JSON file or a shipped map's name, edgeseg.data.class_map) lets a
    network trained on other classes be measured on `spec`; without `model_classes` it can name the
    model's classes by index only. A limit under 1 is refused where it is read: `limit or len(dataset)`
    made 0 mean "all", and a negative one gave an empty set that failed later with a traceback."""
    from edgeseg.inputs import count as checked_count

    limit = checked_count(limit, "the number of validation images (--val-size)",
                          "pass --val-size N with N of 1 or more, or leave it out to use the whole split")
    if not spec:
        raise BadInputError("--max-miou-drop needs a held-out split to measure the drop on",
                            "pass --val camvid:PATH:val (not the split you calibrate on)")
    from edgeseg.data import parse_spec
    from edgeseg.progress import progress as bar

    mapping = read_class_map(class_map) if class_map else None  # before the dataset: a bad map fails first
    dataset = parse_spec(spec, "val")
    bound = _bind(mapping, dataset.info, num_classes, model_classes, spec)
    count = min(len(dataset), limit or len(dataset))
    frames, labels = [], []
    for i in bar(range(count), desc="validation images", unit="img", disable=not progress, leave=False):
        sample = dataset[i]
        frames.append(resize_to_input(sample.image, size))
        labels.append(sample.label)
    return ValidationSet(spec, np.stack(frames), labels, dataset.info.num_classes, dataset.info.ignore_index, bound)


def _bind(mapping, info, num_classes: int, model_classes: Sequence[str] | None, spec: str) -> ClassMap | None:
    """The class map resolved for the model and `--val`'s dataset; without one, the two must have the same classes."""
    if model_classes is not None and len(model_classes) != num_classes:
        raise BadInputError(f"the model has {num_classes} classes but {len(model_classes)} class names",
                            "pass the model's class names in order")
    names = tuple(model_classes) if model_classes is not None else tuple(str(i) for i in range(num_classes))
    if mapping is not None:
        bound = mapping.bind(names, info.classes, info.ignore_index)
        print(bound.summary())
        return bound
    if model_classes is not None:
        require_same_classes(names, info.classes, f"--val {spec}")
    elif info.num_classes != num_classes:
        from edgeseg.data.class_map import mismatch_fix

        raise BadInputError(f"--val {spec} has {info.num_classes} classes, the model {num_classes}",
                            mismatch_fix())
    return None


@dataclass
class BudgetStep:
    layers_in_float: int  # ranked layers (with their fused activations) kept in float
    miou: float
    drop: float


@dataclass
class BudgetReport:
    max_drop: float  # points
    val: str
    images: int
    fp32_miou: float
    int8_miou: float  # every layer INT8
    final_miou: float
    met: bool
    strategy: str
    kept_float: list[str] = field(default_factory=list)
    layer_precisions: dict[str, str] = field(default_factory=dict)  # every layer not in INT8 -> its precision
    steps: list[BudgetStep] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)  # the most sensitive nodes, for the record
    class_map: dict | None = None  # ClassMap.to_dict() when the model's classes are not the split's

    @property
    def drop(self) -> float:
        return round(self.fp32_miou - self.final_miou, 3)

    def to_dict(self) -> dict:
        return {**asdict(self), "drop": self.drop}

    def summary(self) -> str:
        verdict = "within" if self.met else "NOT within"
        kept = f"{len(self.kept_float)} layers kept in float" if self.kept_float else "every layer INT8"
        mapped = f" through class map {self.class_map['source']}" if self.class_map else ""
        text = (f"mIoU budget on {self.val}{mapped} ({self.images} images): FP32 {self.fp32_miou:.2f}%, "
                f"INT8 {self.final_miou:.2f}% ({kept}), drop {self.drop:.2f} points, {verdict} "
                f"{self.max_drop:g}")
        if not self.met:
            text += ("; keeping more layers in float did not close the gap: build fp16, or calibrate with "
                     "another --calib-method or more --calib-size images")
        return text


def restore_until_within(ranking: Sequence[Sequence[str]], evaluate: Callable[[list[str]], float], fp32_miou: float,
                         max_drop: float, max_kept: int | None = None) -> tuple[list[str], list[BudgetStep], bool]:
    """Find the fewest most-sensitive nodes to keep in float: doubling, then bisection.

    `evaluate(kept)` builds and scores the engine with `kept` in float (mIoU percent). Assumes that
    keeping more sensitive layers in float never costs accuracy, which holds closely enough to
    search on; every step is measured, and the answer is a measured one. `ranking` holds groups of
    nodes that stay together (a layer and its fused activation). When no step fits, the best
    measured step is the answer.
    """
    limit = min(len(ranking), max_kept if max_kept is not None else len(ranking))
    steps: list[BudgetStep] = []

    def kept(k: int) -> list[str]:
        return [name for group in ranking[:k] for name in group]

    def best() -> list[str]:
        return kept(max(steps, key=lambda step: step.miou).layers_in_float)

    def measure(k: int) -> bool:
        miou = evaluate(kept(k))
        steps.append(BudgetStep(k, round(miou, 3), round(fp32_miou - miou, 3)))
        return fp32_miou - miou <= max_drop

    if measure(0):
        return [], steps, True
    if limit == 0:
        return [], steps, False
    low, k = 0, 1
    while not measure(k):
        if k == limit:
            return best(), steps, False
        low, k = k, min(2 * k, limit)
    high = k  # within the budget at `high`, not at `low`
    while high - low > 1:
        mid = (low + high) // 2
        if measure(mid):
            high = mid
        else:
            low = mid
    return kept(high), steps, True


def rank_qdq_nodes(float_onnx: str | Path, qdq_onnx: str | Path, batches: Sequence[np.ndarray],
                   input_name: str) -> list[tuple[tuple[str, ...], float]]:
    """Layers of the Q/DQ graph by the SQNR (dB) they lose against the float graph, worst first.

    A layer's loss is the cross-model SQNR of its input minus that of its (activated) output: the
    noise that quantizing it added. This is the local view: cheap (a few batches, one pass of each graph) and
    good at finding the classifier and upsampling layers where segmentation loses its boundaries.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as tmp:
        activations = {}
        for kind, path in (("float", float_onnx), ("qdq", qdq_onnx)):
            augmented = Path(tmp) / f"{kind}.onnx"
            modify_model_output_intermediate_tensors(str(path), str(augmented))
            activations[kind] = collect_activations(str(augmented), Reader(), execution_providers=["CPUExecutionProvider"])
    errors = compute_activation_error(create_activation_matching(activations["qdq"], activations["float"]))
    sqnr = {name: min(err.get("xmodel_err", CLEAN_DB), CLEAN_DB) for name, err in errors.items()}
    return _layer_losses(onnx.load(str(float_onnx), load_external_data=False).graph, sqnr)


CLEAN_DB = 60.0  # SQNR of a tensor quantization did not touch
LAYER_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
FOLLOWERS = ("Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "BatchNormalization", "LeakyRelu")


def _layer_losses(graph, sqnr: dict[str, float]) -> list[tuple[tuple[str, ...], float]]:
    """Each compute layer with the activation the runtime fuses into it (Conv+Relu is one INT8
    kernel; splitting them would add a quantization point), scored by SQNR lost, worst first."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {t.name for t in graph.initializer}
    scores = []
    for node in graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        group, tensor = [node.name], node.output[0]
        while tensor not in sqnr and len(consumers.get(tensor, [])) == 1 and consumers[tensor][0].op_type in FOLLOWERS:
            follower = consumers[tensor][0]
            group.append(follower.name)
            tensor = follower.output[0]
        inputs = [sqnr.get(t, CLEAN_DB) for t in node.input if t and t not in initializers]
        loss = min(inputs or [CLEAN_DB]) - sqnr.get(tensor, CLEAN_DB)
        if math.isfinite(loss):
            scores.append((tuple(group), round(float(loss), 3)))
    return sorted(scores, key=lambda item: -item[1])


@dataclass(frozen=True)
class BudgetRequest:
    """What a backend needs to fit an INT8 build into an mIoU budget."""

    max_drop: float  # points of mIoU
    validation: ValidationSet
    max_kept: int | None = None  # most layers the search may keep in float


def budgeted_qdq(onnx_path: Path, out_path: Path, spec, activations: str,
                 predictor_for: Callable[[Path], Predictor], reduce_range: bool | None = None):
    """Q/DQ INT8 of `onnx_path` at `out_path` within `spec.budget`: (QuantResult, BudgetReport).

    `predictor_for(graph)` turns an ONNX graph (float or Q/DQ) into the backend's own predictor, so
    the drop is measured on the engine that will run, not on a stand-in.
    """
    from edgeseg.build.quantize import float_nodes, qdq_from_onnx

    budget: BudgetRequest = spec.budget
    val, calib = budget.validation, spec.calibration
    fp32 = val.miou(predictor_for(onnx_path))
    scores: dict[tuple[str, ...], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        def quantize(kept: Sequence[str], dst: Path):
            return qdq_from_onnx(onnx_path, dst, calib, spec.calib_method, tuple(spec.keep_float) + tuple(kept),
                                 activations=activations, overwrite=True, reduce_range=reduce_range)

        def evaluate(kept: list[str]) -> float:
            if tuple(kept) not in scores:
                candidate = Path(tmp) / f"candidate-{len(scores)}.onnx"
                quantize(kept, candidate)
                scores[tuple(kept)] = val.miou(predictor_for(candidate))
            return scores[tuple(kept)]

        all_int8 = Path(tmp) / "all-int8.onnx"
        quantize((), all_int8)
        scores[()] = val.miou(predictor_for(all_int8))
        ranking = [] if fp32 - scores[()] <= budget.max_drop else \
            rank_qdq_nodes(onnx_path, all_int8, list(calib.batches())[:4], _input_name(onnx_path))
        kept, steps, met = restore_until_within([group for group, _ in ranking], evaluate, fp32, budget.max_drop,
                                                budget.max_kept)
    result = quantize(kept, out_path)
    report = BudgetReport(budget.max_drop, val.spec, len(val.frames), round(fp32, 3), round(scores[()], 3),
                          round(scores.get(tuple(kept), scores[()]), 3), met, "sqnr-ranking", kept,
                          float_nodes(out_path), steps,
                          [{"nodes": list(g), "sqnr_loss_db": s} for g, s in ranking[:20]], val.class_map_record())
    return result, report


def _input_name(onnx_path: Path) -> str:
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name
