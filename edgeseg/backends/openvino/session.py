"""OpenVINO sessions and what a compiled model says about itself: the run-time half of the backend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from edgeseg.manifest import CACHE_DIR, Manifest, ManifestError
from edgeseg.runtime import cpu
from edgeseg.runtime.session import LoadOptions, Session

XML, BIN = "model.xml", "model.bin"
# INT8 IRs keep the layers NNCF leaves in float at f32 (bf16 would be a second, unrequested change)
HINTS = {"fp32": "f32", "fp16": "f16", "int8": "f32"}


PERFORMANCE_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


TYPE_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "int8"}


def runtime_layers(compiled) -> dict[str, str]:
    """The executed convolutions/matmuls by name, with the precision each actually runs in."""
    layers: dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else ""
        if kind.lower() not in ("convolution", "fullyconnected", "matmul", "deconvolution", "groupconvolution"):
            continue
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        layers[op.get_friendly_name()] = TYPE_NAMES.get(precision.lower(), precision.lower())
    return layers


def layer_precisions(compiled) -> dict[str, int]:
    """Count the executed convolutions/matmuls by the precision they actually run in."""
    counts: dict[str, int] = {}
    for precision in runtime_layers(compiled).values():
        counts[precision] = counts.get(precision, 0) + 1
    return counts


def compile_ir(core, xml: Path, device: str, precision: str, performance: str, cache_dir: str | None):
    config = {"INFERENCE_PRECISION_HINT": HINTS.get(precision, "f32"),
              "PERFORMANCE_HINT": PERFORMANCE_HINTS[performance]}
    if cache_dir:
        config["CACHE_DIR"] = cache_dir
    from edgeseg.backends.openvino.failures import compile_fix, reported

    # the cause is on the later lines of OpenVINO's message; the fix depends on it (device, op, damaged file)
    with reported(f"OpenVINO cannot compile {xml} for {device}", lambda kind, _: compile_fix(kind, device, cache_dir)):
        return core.compile_model(str(xml), device, config)


def precision_as_run(compiled) -> str:
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return TYPE_NAMES.get(name, name)


class OpenVinoSession(Session):
    def __init__(self, manifest: Manifest, root: Path, options: LoadOptions) -> None:
        import openvino as ov

        super().__init__(manifest)
        core = ov.Core()
        if options.threads:
            core.set_property("CPU", {"INFERENCE_NUM_THREADS": options.threads})
        device = options.device or manifest.backend.get("options", {}).get("device", "CPU")
        check_int8_cpu(manifest, root, device)
        cache = cache_dir(manifest, root, options.cache_dir)  # compiled blobs make the second load fast
        self._compiled = compile_ir(core, root / XML, device, manifest.precision["requested"],
                                  options.performance_hint, cache)
        self.precision_as_run = precision_as_run(self._compiled)
        if manifest.precision["requested"] == "int8" and layer_precisions(self._compiled).get("int8"):
            self.precision_as_run = "int8"  # the hint only governs the layers NNCF left in float
        self._request = self._compiled.create_infer_request()
        self._throughput = (core, root / XML, device, manifest.precision["requested"], cache)

    def run_for(self, frames: np.ndarray, seconds: float) -> tuple[int, float, int]:
        """Throughput mode: a THROUGHPUT-hint compile (several CPU streams) fed by an AsyncInferQueue
        with the plugin's optimal number of requests, so requests overlap as in a batch or multi-camera job."""
        import time

        import openvino as ov

        if self.detects_instances:  # four outputs and a host paste per result: one request at a time
            return super().run_for(frames, seconds)
        batch = self.check_frames(frames)
        if self._host_preprocess:
            from edgeseg.runtime.session import normalize

            batch = normalize(batch, self.manifest.input.mean, self.manifest.input.std)
        core, xml, device, precision, cache = self._throughput
        queue = ov.AsyncInferQueue(compile_ir(core, xml, device, precision, "throughput", cache))
        if self.manifest.output.kind != "labels":  # the host tail is part of every result, as in infer()
            from edgeseg.runtime.tail import upsample_argmax

            size = frames.shape[-3:-1]
            queue.set_callback(lambda request, _: upsample_argmax(request.get_output_tensor(0).data, size))
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            queue.start_async({0: batch})
            done += len(batch)
        queue.wait_all()
        return done, time.perf_counter() - start, len(queue)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: batch}, share_inputs=True)
        return self._request.get_output_tensor(0).data.copy()

    def _run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        self._request.infer({0: batch}, share_inputs=True)
        return [self._request.get_output_tensor(i).data.copy() for i in range(len(self._compiled.outputs))]

    def describe(self) -> dict:
        return {**super().describe(), "precision_as_run": self.precision_as_run}


KERNELS = "OpenVINO's CPU plugin (oneDNN's u8 x s8 convolutions)"


def check_int8_cpu(manifest: Manifest, root: Path, device: str) -> None:
    """Refuse an INT8 IR whose dense weights saturate on this CPU (edgeseg.runtime.cpu; a warning with
    EDGESEG_ALLOW_INT8_SATURATION=1). Only where the CPU plugin may run it: GPU and NPU plugins have no
    vpmaddubsw path."""
    if device.upper().startswith(("GPU", "NPU")):
        return
    cpu.check_int8_cpu(manifest, root, KERNELS)


def cache_key(manifest: Manifest) -> str:
    """The compiled-model cache folder for exactly these IR bytes: a digest of the manifest's (verified)
    sha256 of model.xml and model.bin. OpenVINO keys its blobs by the .xml path and text only, so an
    engine whose model.bin was replaced (new weights, same graph) would otherwise run the old blob."""
    missing = [name for name in (XML, BIN) if name not in manifest.files]
    if missing:
        raise ManifestError(f"the manifest of engine {manifest.name} does not hash {' and '.join(missing)}, "
                            "which OpenVINO loads", "rebuild the engine with `edgeseg build ... --force`")
    return hashlib.sha256(f"{manifest.files[XML]} {manifest.files[BIN]}".encode()).hexdigest()[:32]


def cache_dir(manifest: Manifest, root: Path, user_dir: str | None) -> str | None:
    """`<user_dir>/<cache_key>`, else `<engine>/.cache/<cache_key>`; None (no cache) when the engine
    directory is read-only and no other folder was given."""
    if user_dir:
        return str(Path(user_dir) / cache_key(manifest))
    if not _writable(root):
        return None
    return str(root / CACHE_DIR / cache_key(manifest))


def _writable(root: Path) -> bool:
    import os

    return os.access(root, os.W_OK)


def load(manifest: Manifest, root: Path, options: LoadOptions = LoadOptions()) -> Session:
    return OpenVinoSession(manifest, root, options)
