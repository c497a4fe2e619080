"""A segmentation network exported elsewhere, as the same deployment graph a zoo network gets.

    foreign = open_foreign("segformer.onnx", Declared(preset="segformer", classes="cityscapes"), (512, 1024))
    exported = foreign.write_wrapped("stage/model.onnx", ExportOptions(...))

`open_foreign` reads the graph, gathers what the user declared (flags, sidecar, metadata, preset),
refuses what is missing or contradicts the graph, and runs the graph once to see what its output is;
all of it before anything is written. `write_wrapped` puts edgeseg's input and tail around the
graph, simplifies and checks it, and publishes it. `check_against_reference` holds any runner of the
wrapped graph (ONNX Runtime on the file, or a built engine) to the graph as given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from edgeseg.build.onnx_import.declare import PRESETS, Declared, Resolved, gather
from edgeseg.build.onnx_import.graph import GraphFacts, read_graph
from edgeseg.build.onnx_import.labels import Labels, resolve_labels
from edgeseg.build.onnx_import.probe import OutputFacts, ort_session, probe_output
from edgeseg.build.onnx_import.reference import Agreement, agreement, reference_labels
from edgeseg.build.onnx_import.wrap import Preprocessing, wrap
from edgeseg.errors import BadInputError

__all__ = ["PRESETS", "Declared", "ForeignNetwork", "open_foreign"]

MIN_WRAP_AGREEMENT = 0.999  # the wrapped FP32 graph against the graph as given; below it the wrapping is wrong


@dataclass
class ForeignNetwork:
    facts: GraphFacts
    resolved: Resolved
    pre: Preprocessing
    output: OutputFacts
    labels: Labels
    size: tuple[int, int]
    sha256: str
    session: Any = field(repr=False, default=None)  # ONNX Runtime on the graph as given
    added: list[str] = field(default_factory=list)
    parity: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.facts.path.stem

    @property
    def num_classes(self) -> int:
        return len(self.labels.classes)

    def dataset(self) -> dict[str, Any]:
        """What a zoo checkpoint's dataset record holds, for the manifest's classes, palette and input."""
        mean, std = self.pre.canonical()
        return {"name": self.labels.source, "classes": list(self.labels.classes),
                "palette": [list(c) for c in self.labels.palette], "ignore_index": self.labels.ignore_index,
                "mean": list(mean), "std": list(std)}

    def record(self) -> dict[str, Any]:
        """The manifest's model.onnx_import: the file by hash, what was detected, declared and added."""
        f = self.facts
        return {"file": os.path.abspath(f.path), "sha256": self.sha256, "opset": f.opset,
                "detected": {"input": {"name": f.input.name, "layout": f.input.layout, "dtype": f.input.dtype,
                                       "shape": [d if isinstance(d, int) else None for d in f.input.shape]},
                             "output": {"name": f.output, "dtype": f.output_dtype,
                                        **self.output.record(self.pre.padded(self.size))},
                             "outputs_left_out": list(f.other_outputs), "metadata_props": dict(f.metadata)},
                "declared": self.resolved.record(), "added": list(self.added), "parity": dict(self.parity)}

    def reference(self, frames: np.ndarray) -> np.ndarray:
        return reference_labels(self.session, self.facts, self.output, self.pre, frames)

    def write_wrapped(self, path: str | os.PathLike, batch: int, dynamic: bool, host_tail: bool,
                      fuse_argmax: bool = True, simplify: bool = True):
        """Wrap, simplify, check and publish the deployment graph at `path`; an ExportResult for the build."""
        from edgeseg.build.export import ExportError, ExportOptions, ExportResult, _dtype, _shape, describe_graph
        from edgeseg.build.export import simplify as onnxsim
        from edgeseg.io import atomic_path

        start = time.perf_counter()
        wrapped = wrap(self.facts, self.output, self.pre, self.size, None if dynamic else batch, dynamic,
                       host_tail, fuse_argmax)
        self.added = wrapped.added
        model, notes = wrapped.model, []
        # the file now takes uint8 BGR frames: its metadata says so, as an `edgeseg export` file's does (the
        # original metadata_props are recorded in the manifest's model.onnx_import)
        del model.metadata_props[:]
        describe_graph(model, ExportOptions(self.size), (0.0,) * 3, (1.0,) * 3, self.dataset())
        exported_nodes = len(model.graph.node)
        problem = None
        if simplify:
            model, problem = onnxsim(model)
            if problem:
                notes.append(problem)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise ExportError(f"the wrapped graph fails the ONNX checker: {str(exc)[:300]}",
                              "report this graph (edgeseg's wrapper should not break a valid model)") from exc
        with atomic_path(path) as tmp:
            onnx.save(model, str(tmp))
        g = model.graph
        return ExportResult(str(path), "import", self.facts.opset, g.input[0].name, _shape(g.input[0]),
                            _dtype(g.input[0]), g.output[0].name, wrapped.output_kind, _shape(g.output[0]),
                            _dtype(g.output[0]), exported_nodes, len(g.node), simplify and problem is None,
                            time.perf_counter() - start, notes)

    def check_against_reference(self, run: Callable[[np.ndarray], np.ndarray], frames: np.ndarray,
                                what: str, frames_from: str, required: float | None = None) -> Agreement:
        """Labels of `run` (frames -> class ids) against the graph as given; recorded under `what`."""
        ref = self.reference(frames)
        result = agreement(ref, np.concatenate([run(frames[i:i + 1]) for i in range(len(frames))]))
        self.parity[what] = result.record(frames_from)
        if required is not None and result.fraction < required:
            raise BadInputError(f"the wrapped graph agrees with {self.facts.path} as given on only "
                                f"{100 * result.fraction:.3f}% of pixels ({result.frames} frames)",
                                "check the declared preprocessing; if it is right, report this graph")
        return result


def open_foreign(path: str | os.PathLike, declared: Declared, size: tuple[int, int] | None, batch: int = 1,
                 dynamic: bool = False) -> ForeignNetwork:
    """Everything about the graph settled before a file is written, or a refusal saying what to add."""
    from edgeseg.io import sha256_file

    facts = read_graph(path, declared.output, declared.input_layout)
    resolved = gather(declared, facts.path, facts.metadata)
    engine_size = _engine_size(facts, resolved, size)
    _check_batch(facts, batch, dynamic)
    pre = _preprocessing(facts, resolved)
    if dynamic and pre.size_divisor > 1:
        raise BadInputError(f"--dynamic with a size divisor of {pre.size_divisor}: frames of any size cannot be "
                            "padded to it inside a dynamic engine", "build at a fixed --input-size without --dynamic")
    session = ort_session(facts)
    output = probe_output(facts, session, pre.padded(engine_size), resolved.get("output_layout"))
    labels = resolve_labels(resolved, output.num_classes, facts.path)
    filled = sorted({s for s in resolved.sources.values() if s.startswith("preset")})
    for preset in filled:
        print(f"{preset} filled: {', '.join(resolved.filled_by(preset))}")
    return ForeignNetwork(facts, resolved, pre, output, labels, engine_size, sha256_file(facts.path), session)


def _engine_size(facts: GraphFacts, resolved: Resolved, size: tuple[int, int] | None) -> tuple[int, int]:
    if size:
        resolved.offer("input_size", tuple(size), "--input-size")
    wanted = resolved.get("input_size")
    static = facts.input.static_size
    if static and wanted and tuple(wanted) != static:
        raise BadInputError(f"{facts.path} takes {static[0]}x{static[1]} images only; {resolved.sources['input_size']} "
                            f"asks for {wanted[0]}x{wanted[1]}",
                            f"drop --input-size (edgeseg resizes frames to {static[0]}x{static[1]}), or export the "
                            "graph with dynamic height and width")
    if static:
        return static
    if not wanted:
        raise BadInputError(f"{facts.path} has a dynamic height and width: the engine's input size is not known",
                            "pass --input-size HxW (e.g. 360x480), or input_size in --meta")
    return tuple(int(v) for v in wanted)  # type: ignore[return-value]


def _check_batch(facts: GraphFacts, batch: int, dynamic: bool) -> None:
    static = facts.input.static_batch
    if dynamic and (static or facts.input.static_size):
        raise BadInputError(f"--dynamic needs a graph with dynamic batch, height and width; {facts.path} takes "
                            f"{list(facts.input.shape)}", "export with dynamic axes, or drop --dynamic")
    if static and static != batch:
        raise BadInputError(f"{facts.path} takes batches of {static}; --batch is {batch}",
                            f"pass --batch {static}, or export the graph with a dynamic batch axis")


def _preprocessing(facts: GraphFacts, resolved: Resolved) -> Preprocessing:
    order = resolved.get("channel_order")
    if order is None:
        raise BadInputError(f"{facts.path} does not say whether it takes RGB or BGR images",
                            "pass --channel-order rgb|bgr, or a --preset (" + ", ".join(PRESETS) + ")")
    if order not in ("rgb", "bgr"):
        raise BadInputError(f"channel order '{order}' ({resolved.sources['channel_order']})", "choose rgb or bgr")
    divisor = int(resolved.get("size_divisor") or 1)
    if divisor < 1:
        raise BadInputError(f"size divisor {divisor} must be 1 or more", "pass --size-divisor N, e.g. 32")
    if facts.input.dtype == "uint8":
        return Preprocessing(order, size_divisor=divisor)  # the graph normalizes its uint8 input itself
    mean, std, value_range = resolved.get("mean"), resolved.get("std"), resolved.get("value_range")
    if mean is None or std is None:
        missing = " and ".join(f for f, v in (("--mean", mean), ("--std", std)) if v is None)
        raise BadInputError(f"{facts.path} takes {facts.input.dtype} images and does not say how they are normalized "
                            f"({missing} missing)", f"pass {missing} (per channel, in the graph's colour order; "
                            "--mean 0,0,0 --std 1,1,1 if it normalizes itself), or a --preset ("
                            + ", ".join(PRESETS) + ")")
    if value_range is None:
        if max(max(mean), max(std)) <= 1:
            raise BadInputError(f"{facts.path}: are pixels 0-1 or 0-255 before the mean and std?",
                                "pass --value-range 1 or --value-range 255")
        value_range = 255  # a mean above 1 is on the 0-255 scale: there is no other reading
        resolved.offer("value_range", 255, "deduced from mean/std above 1")
    if value_range not in (1, 255):
        raise BadInputError(f"value range {value_range}", "pass --value-range 1 (pixels 0-1) or 255 (pixels 0-255)")
    if value_range == 1 and max(mean) > 1:
        raise BadInputError(f"mean {list(mean)} ({resolved.sources['mean']}) is on the 0-255 scale but the value range "
                            f"is 1 ({resolved.sources['value_range']})", "pass --value-range 255, or the mean in 0-1")
    if min(std) <= 0:
        raise BadInputError(f"std {list(std)} has a value of 0 or less", "pass the per-channel standard deviations")
    return Preprocessing(order, int(value_range), tuple(mean), tuple(std), divisor)
