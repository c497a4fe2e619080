"""Beyond one machine: edgeseg engines as models for NVIDIA Triton Inference Server, DeepStream's nvinfer and
OpenVINO Model Server, written from the manifest and checked offline against each server's own schema and
loading rules (none of these servers runs here; docs/serving.md says what only a real one can verify).

    from edgeseg.serve import ServeRequest, export, check
    done = export(ServeRequest(Path("engines/fastscnn-int8-onnxruntime"), "triton", Path("models")))
    problems = check(Path("models/fastscnn-int8-onnxruntime"))   # [] when Triton would load it
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeseg.errors import EdgesegError
from edgeseg.serve.export import RECORD, TARGETS, ServeExport, ServeRequest, export
from edgeseg.serve.tensors import Signature, Tensor

__all__ = ["ServeRequest", "ServeExport", "export", "check", "detect", "TARGETS"]


def detect(path: Path) -> str:
    """Which server's files `path` holds: a Triton model folder or repository, an OVMS repository (config.json)
    or a DeepStream model folder."""
    from edgeseg.serve import deepstream, ovms

    if (path / "config.pbtxt").is_file():
        return "triton"
    if (path / deepstream.CONFIG).is_file():
        return "deepstream"
    triton_models = path.is_dir() and any((p / "config.pbtxt").is_file() for p in path.iterdir() if p.is_dir())
    if (path / ovms.CONFIG).is_file() and (_lists_models(path / ovms.CONFIG) or not triton_models):
        return "ovms"
    if triton_models:
        return "triton-repository"
    raise EdgesegError(f"{path} holds no config.pbtxt, {deepstream.CONFIG} or {ovms.CONFIG}",
                       "pass a Triton model folder or repository, a DeepStream model folder, or an OVMS repository")


def _lists_models(config: Path) -> bool:
    try:
        return "model_config_list" in json.loads(config.read_text())
    except (OSError, ValueError):
        return True  # broken JSON named config.json: let the OVMS check say what is wrong


def check(path: Path) -> list[str]:
    """Every problem found in a served model's files, each naming the file and the rule; [] when none."""
    from edgeseg.serve import deepstream, ovms, triton_check

    path = Path(path)
    kind = detect(path)
    if kind == "triton":
        return triton_check.check_model_dir(path, _recorded_signature(path))
    if kind == "triton-repository":
        return [f"{model.name}: {p}" for model in sorted(path.iterdir()) if (model / "config.pbtxt").is_file()
                for p in triton_check.check_model_dir(model, _recorded_signature(model))]
    if kind == "deepstream":
        return deepstream.check_model_dir(path)
    return ovms.check_repository(path)


def _recorded_signature(model_dir: Path) -> Signature | None:
    """The I/O the export recorded: what a TensorRT plan is compared with where TensorRT cannot read it."""
    record = model_dir / RECORD
    if not record.is_file():
        return None
    data = json.loads(record.read_text()).get("signature") or {}
    tensors = {k: tuple(Tensor(t["name"], t["dtype"], tuple(t["shape"])) for t in data.get(k, []))
               for k in ("inputs", "outputs")}
    return Signature(tensors["inputs"], tensors["outputs"]) if tensors["inputs"] else None
