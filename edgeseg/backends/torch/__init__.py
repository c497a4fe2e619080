"""Eager PyTorch: the reference every engine is compared with, and the baseline for speed.

Its artifact is the checkpoint itself; it runs the same DeployModel (fused preprocessing and argmax)
that export traces, so it sees exactly what the engines see. The one backend that needs torch at run time.
"""

from __future__ import annotations

from edgeseg.backends import Availability

NAME = "torch"


def availability() -> Availability:
    try:
        import torch
    except ImportError:
        return Availability(False, None, "torch is not installed (pip install 'edgeseg[torch]')")
    return Availability(True, torch.__version__, devices=("cpu",) + (("cuda",) if torch.cuda.is_available() else ()))
