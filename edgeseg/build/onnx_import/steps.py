"""The build's steps for a foreign graph, called by the orchestrator where a zoo network would be
loaded, exported and checked: the request checked and the graph opened, the wrapped graph written and
held to the original in ONNX Runtime, and the built engine held to it too (recorded in the manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.build.onnx_import import MIN_WRAP_AGREEMENT, Declared, ForeignNetwork, open_foreign
from edgeseg.errors import BadInputError

PARITY_FRAMES = 8


def open_requested(source: Any, graph: Any, backend: str) -> ForeignNetwork:
    """`source` and `graph` are the BuildRequest's: refuse what cannot apply to a foreign graph, then open it."""
    clashing = [flag for flag, given in (("--checkpoint", source.checkpoint), ("--model", source.model),
                                         ("--random-weights", source.random_weights)) if given]
    if clashing:
        raise BadInputError(f"--onnx brings its own network and weights; {', '.join(clashing)} cannot apply",
                            f"drop {' and '.join(clashing)} (the engine is named after the ONNX file; --out "
                            "names it otherwise)")
    if backend == "torch":
        raise BadInputError("the torch backend runs edgeseg checkpoints, not ONNX graphs",
                            "pass --backend onnxruntime, openvino or tensorrt")
    if not graph.fuse_preprocess:
        raise BadInputError("--no-fuse-preprocess with --onnx: a foreign graph's declared preprocessing always "
                            "goes into the engine", "drop --no-fuse-preprocess")
    return open_foreign(source.onnx, source.declared or Declared(), graph.input_size, graph.batch, graph.dynamic)


def parity_frames(calibration: Any, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Real frames to hold the engine to the graph on: the calibration images, or the CamVid train
    frames shipped with edgeseg (real road scenes; which ones does not matter, that they are real does)."""
    if calibration is not None:
        return calibration.frames[:PARITY_FRAMES], f"calibration set {calibration.spec}"
    from edgeseg.build.calibration import open_calibration
    from edgeseg.weights import CALIBRATION

    frames = open_calibration(f"folder:{CALIBRATION}", size, PARITY_FRAMES, progress=False).frames
    return frames, "the CamVid train frames shipped with edgeseg"


def write_checked(foreign: ForeignNetwork, path: Path, options: Any, frames: tuple[np.ndarray, str]):
    """Wrap and publish the graph (`options`: the build's ExportOptions), then hold the file, run in ONNX
    Runtime, to the graph as given: below MIN_WRAP_AGREEMENT the wrapping is wrong and the build stops."""
    import onnxruntime as ort

    from edgeseg.runtime.tail import KIND, upsample_argmax

    exported = foreign.write_wrapped(path, options.batch, options.dynamic, options.host_tail, options.fuse_argmax)
    if not options.fuse_argmax:
        return exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = exported.input_shape[0] if isinstance(exported.input_shape[0], int) else 1

    def run(x: np.ndarray) -> np.ndarray:
        out = session.run(None, {exported.input_name: np.repeat(x, batch, axis=0)})[0][:1]
        return upsample_argmax(out, x.shape[1:3]) if exported.output_kind == KIND else out

    agreed = foreign.check_against_reference(run, frames[0], "wrapped_graph_onnxruntime", frames[1],
                                             MIN_WRAP_AGREEMENT)
    print(f"wrapped {foreign.facts.path.name}: {', '.join(foreign.added) or 'nothing added'}; labels agree with "
          f"the graph as given on {100 * agreed.fraction:.3f}% of pixels ({agreed.frames} frames)")
    return exported


def engine_parity(foreign: ForeignNetwork, session_side: Any, manifest: Any, stage: Path,
                  frames: tuple[np.ndarray, str]) -> None:
    """The built engine (any precision) against the graph as given; recorded in the manifest's model section."""
    with session_side.load(manifest, stage) as session:
        batch = manifest.input.shape[0] or 1
        agreed = foreign.check_against_reference(lambda x: session.infer(np.repeat(x, batch, axis=0))[:1],
                                                 frames[0], "engine", frames[1])
    manifest.model["onnx_import"] = foreign.record()
    print(f"engine ({manifest.precision['requested']}, {manifest.backend['name']}) against "
          f"{foreign.facts.path.name} as given: {100 * agreed.fraction:.3f}% of pixels agree ({agreed.frames} frames)")
