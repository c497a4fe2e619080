"""The torch reference 'build': copy the checkpoint into the engine directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgeseg.backends.torch.session import ENGINE_FILE
from edgeseg.build.spec import BuildSpec, Built
from edgeseg.errors import BadInputError


def build(onnx_path: Path, out_dir: Path, spec: BuildSpec) -> Built:
    import torch

    if spec.precision != "fp32":
        raise BadInputError(f"the torch reference runs fp32 only, not {spec.precision}",
                            "use --precision fp32 with --backend torch")
    if not spec.checkpoint:
        raise BadInputError("the torch backend needs the checkpoint", "pass --checkpoint PATH")
    shutil.copyfile(spec.checkpoint, out_dir / ENGINE_FILE)
    return Built([ENGINE_FILE], "fp32", "cpu", torch.__version__)
