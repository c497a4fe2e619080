"""The torch-free runtime: load an engine directory, verify it, and run frames through it.

    from edgeseg.runtime import load, resize_to_input
    with load("engines/deeplabv3plus-fp32-openvino") as session:
        labels = session.infer(resize_to_input(frame, session.manifest.input.size)[None])

`newest_engine()` is what commands run without --engine: the newest engine directory under engines/.

Imports numpy, OpenCV and the one inference library the engine needs; never torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeseg import backends
from edgeseg.manifest import MANIFEST_NAME, Manifest, ManifestError, load_manifest
from edgeseg.runtime.frames import resize_to_input
from edgeseg.runtime.session import LoadOptions, Session

__all__ = ["load", "LoadOptions", "Session", "Manifest", "resize_to_input",
           "Pipeline", "PipelineConfig", "Feed", "VideoFile", "ImageFolder", "Camera", "RTSP", "GStreamer", "Reconnect",
           "VideoSink", "PngFolder", "WindowSink", "NullSink", "CallbackSink", "newest_engine"]

# The streaming API, imported on first use so that `load` alone stays as light as it was.
_LAZY = {"Pipeline": "pipeline", "PipelineConfig": "pipeline", "Feed": "feeds", "VideoFile": "sources", "ImageFolder": "sources",
         "Camera": "sources", "RTSP": "sources", "GStreamer": "sources", "Reconnect": "sources",
         "VideoSink": "sinks", "PngFolder": "sinks", "WindowSink": "sinks", "NullSink": "sinks",
         "CallbackSink": "sinks", "newest_engine": "engines"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(engine_dir: str | os.PathLike, options: LoadOptions = LoadOptions()) -> Session:
    """Verify the manifest and the sha256 of every file, then open a session on the engine's backend.

    The directory is resolved once, so the session opens the very files that were verified even when
    `engine_dir` is a link that is switched to another engine meanwhile.
    """
    root = Path(engine_dir).resolve()
    manifest = load_manifest(root)
    name = manifest.backend["name"]
    if name not in backends.names():
        raise ManifestError(f"{root / MANIFEST_NAME}: 'backend.name' is {name!r:.40}; this edgeseg runs "
                            f"{', '.join(backends.names())}", "rebuild the engine with `edgeseg build ... --force`, "
                            "or use the edgeseg version that wrote it")
    return backends.session_side(name).load(manifest, root, options)
