"""Build time: checkpoint -> ONNX (export, simplify, parity) -> calibration and INT8 (quantize, graph
rewrites, the mIoU budget) -> a backend's engine -> the speed guard -> engine directory + manifest.

    from edgeseg.build import BuildRequest, Int8, Source, build_engine
    result = build_engine(BuildRequest(Source(checkpoint="runs/x/best.pt"), precision="int8",
                                       int8=Int8(calib="camvid:PATH:train", val="camvid:PATH:val")))

Nothing under edgeseg.runtime imports this package; it may use the runtime to check what it built.
"""

from __future__ import annotations

from edgeseg.build.request import BuildRequest, Destination, Graph, Int8, Source
from edgeseg.build.spec import BackendOptions

__all__ = ["BuildRequest", "Source", "Graph", "Int8", "Destination", "BackendOptions", "BuildResult", "build_engine"]


def __getattr__(name: str):
    # the orchestrator imports torch (export): only on first use, so `edgeseg.build.spec` stays light
    if name in ("BuildResult", "build_engine"):
        from edgeseg.build import orchestrator

        return getattr(orchestrator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
