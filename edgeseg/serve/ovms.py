"""An OpenVINO Model Server repository: `<out>/config.json` listing `<out>/<name>/1/<model>`.

OVMS runs OpenVINO: an OpenVINO engine's IR as it is (with the host tail appended for label maps), an ONNX
Runtime engine's ONNX graph read by OpenVINO, a TensorRT engine's FP32 ONNX (a plan cannot be loaded).
`base_path` is relative to config.json, which OVMS allows; `layout` tags the frames input so that
`batch_size: auto` and resizing requests find the batch; `plugin_config` repeats what the session compiled
with (the precision hint keeps bf16-capable CPUs on the precision edgeseg measured).

config.json is checked against OVMS's own JSON schema (transcribed in schemas/ovms_config.json from
model_server's src/schema.cpp, where every object refuses unknown keys), then against the files it names.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from edgeseg.backends import serve_side
from edgeseg.manifest import Manifest
from edgeseg.serve.served import ServedModel, read_signature

CONFIG = "config.json"
VERSION = "1"
_LAYOUT = re.compile(r"^(?:[NCHWD?]|\.\.\.)+$")


def schema() -> dict:
    return json.loads(resources.files("edgeseg.serve").joinpath("schemas/ovms_config.json").read_text())


def model_entry(name: str, manifest: Manifest, served: ServedModel) -> dict:
    config: dict = {"name": name, "base_path": name, "target_device": "CPU", "nireq": 2}
    frames = next((t for t in served.signature.inputs if t.name == manifest.input.name), None)
    if frames is not None and len(frames.shape) == 4:
        config["layout"] = {frames.name: manifest.input.layout}
    if manifest.backend["name"] == "openvino":
        config["target_device"] = manifest.backend.get("options", {}).get("device", "CPU")
        config["plugin_config"] = serve_side("openvino").ovms_plugin_config(manifest)
    else:
        config["plugin_config"] = {"PERFORMANCE_HINT": "LATENCY"}
    return {"config": config}


def publish_entry(out: Path, entry: dict, force: bool) -> None:
    """Add `entry` to out/config.json, rewritten whole, under a lock so that two exports at once keep both."""
    import fcntl

    from edgeseg.io import atomic_path

    with open(out / ".config.json.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = merged_config(out / CONFIG, entry, force)
        with atomic_path(out / CONFIG, overwrite=True) as tmp:
            tmp.write_text(json.dumps(data, indent=2) + "\n")


def merged_config(existing: Path, entry: dict, force: bool) -> dict:
    """config.json with `entry` added; an existing entry of the same name is replaced only with --force, and
    only if it is edgeseg's (its base_path the folder the export writes)."""
    from edgeseg.errors import EdgesegError

    data = {"model_config_list": []}
    if existing.is_file():
        try:
            data = json.loads(existing.read_text())
        except json.JSONDecodeError as exc:
            raise EdgesegError(f"{existing} is not JSON ({exc})", "fix or move it, then export again") from exc
        problems = schema_problems(data)
        if problems:
            raise EdgesegError(f"{existing} does not pass OVMS's schema: {problems[0]}", "fix or move it, then export again")
    name = entry["config"]["name"]
    others = [m for m in data["model_config_list"] if m["config"]["name"] != name]
    same = [m["config"] for m in data["model_config_list"] if m["config"]["name"] == name]
    if same and not force:
        raise EdgesegError(f"{existing} already serves a model named {name!r}",
                           "pass --name to export under another name, or --force to replace it")
    if same and same[0].get("base_path") != entry["config"].get("base_path"):
        raise EdgesegError(f"{existing} serves {name!r} from {same[0].get('base_path')!r}, not from edgeseg's folder "
                           f"{entry['config'].get('base_path')!r}; --force only replaces what edgeseg wrote",
                           "pass --name to export under another name")
    data["model_config_list"] = others + [entry]
    return data


def schema_problems(data) -> list[str]:
    try:
        import jsonschema
    except ImportError:
        from edgeseg.errors import EdgesegError

        raise EdgesegError("jsonschema is not installed: OVMS's config.json cannot be checked",
                           "pip install 'edgeseg[serve]'") from None

    validator = jsonschema.Draft7Validator(schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]


def check_repository(root: Path) -> list[str]:
    """Every problem OVMS would have with `root/config.json` and the models it names."""
    path = root / CONFIG
    if not path.is_file():
        return [f"{path} is missing"]
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return [f"{path} is not JSON: {exc}"]
    problems = schema_problems(data)
    if problems:
        return problems
    names = [m["config"]["name"] for m in data["model_config_list"]]
    problems += [f"model name {n!r} is listed twice" for n in sorted({n for n in names if names.count(n) > 1})]
    for model in data["model_config_list"]:
        problems += check_model(root, model["config"])
    return problems


def check_model(root: Path, config: dict) -> list[str]:
    name = config["name"]
    if "base_path" not in config:
        return [f"{name}: base_path is missing"]
    if "://" in config["base_path"]:
        return []  # cloud storage (gs://, s3://, azure://): not readable from here
    base = Path(config["base_path"])
    base = base if base.is_absolute() else root / base
    if base.is_file() and base.suffix in (".xml", ".onnx"):  # a single model file: OVMS serves it as version 1
        return _check_layout(name, config, read_signature(base))
    versions = sorted(p for p in base.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0) \
        if base.is_dir() else []
    if not versions:
        return [f"{name}: {base} has no version folder (1/, 2/, ...)"]
    problems = []
    for version in versions:
        graphs = sorted(version.glob("*.xml")) + sorted(version.glob("*.onnx"))
        if len(graphs) != 1:
            problems.append(f"{name}: {version} holds {len(graphs)} models (.xml or .onnx); OVMS loads exactly one")
            continue
        if graphs[0].suffix == ".xml" and not graphs[0].with_suffix(".bin").is_file():
            problems.append(f"{name}: {graphs[0].with_suffix('.bin')} is missing")
            continue
        problems += _check_layout(name, config, read_signature(graphs[0]))
    device = config.get("target_device", "CPU")
    if device.split(":")[0].split(".")[0] not in ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI"):
        problems.append(f"{name}: target_device {device!r} is not an OpenVINO device")
    return problems


def _check_layout(name: str, config: dict, sig) -> list[str]:
    tensors = {t.name: t for t in sig.inputs + sig.outputs}
    problems = []
    for key in ("layout", "shape"):
        value = config.get(key)
        if isinstance(value, dict):
            problems += [f"{name}: {key} names {tensor!r}, which the model does not have ({', '.join(tensors)})"
                         for tensor in value if tensor not in tensors]
    layouts = config.get("layout")
    for tensor, text in (layouts.items() if isinstance(layouts, dict) else []):
        for part in text.split(":"):
            if not _LAYOUT.match(part) or any(part.count(c) > 1 for c in "NCHWD"):
                problems.append(f"{name}: layout {text!r} for {tensor!r}: expected letters N, C, H, W, D, ? or ...")
            elif tensor in tensors and "..." not in part and len(part) != len(tensors[tensor].shape):
                problems.append(f"{name}: layout {part!r} has {len(part)} dimensions; {tensors[tensor].describe()} "
                                f"has {len(tensors[tensor].shape)}")
    return problems
