"""Capture torchvision's segmentation/ImageNet state-dict layouts as test fixtures, and check
that edgeseg's networks compute the same outputs as torchvision's given the same weights.

torchvision cannot be installed on the CPU-only machines edgeseg is developed on (its wheels pull a
CUDA torch), but its model definitions are pure Python. Unpack a wheel without installing it:

    pip download torchvision==0.28.0 --no-deps -d /tmp/tvwhl && unzip -q -o /tmp/tvwhl/*.whl -d /tmp/tvsite
    python tools/torchvision_reference.py --torchvision-path /tmp/tvsite fixtures   # writes tests/fixtures/torchvision
    python tools/torchvision_reference.py --torchvision-path /tmp/tvsite numerics   # prints the parity table

The compiled torchvision ops (nms, roi_align) are not needed and are not loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "torchvision"
sys.path.insert(0, str(ROOT))

# torchvision builder -> (edgeseg model, options) that must match it key for key
SEGMENTATION = {
    "fcn_resnet50": ("fcn", {"backbone": "resnet50", "aux": True}),
    "fcn_resnet101": ("fcn", {"backbone": "resnet101", "aux": True}),
    "deeplabv3_resnet50": ("deeplabv3", {"backbone": "resnet50", "aux": True, "output_stride": 8, "multi_grid": False}),
    "deeplabv3_resnet101": ("deeplabv3", {"backbone": "resnet101", "aux": True, "output_stride": 8, "multi_grid": False}),
    "deeplabv3_mobilenet_v3_large": ("deeplabv3", {"backbone": "mobilenetv3_large", "aux": True,
                                                   "atrous_rates": [12, 24, 36]}),
    "lraspp_mobilenet_v3_large": ("lraspp", {}),
}
IMAGENET = {"resnet50": "resnet50", "resnet101": "resnet101", "mobilenet_v2": "mobilenetv2",
            "mobilenet_v3_large": "mobilenetv3_large", "vgg16": "vgg16", "vgg16_bn": "vgg16_bn"}


def import_torchvision(path: str | None):
    if path:
        sys.path.insert(0, path)
        # The meta registrations need the compiled ops library, which a CPU torch cannot load.
        sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision.models as tvm
    import torchvision.models.segmentation as tvseg

    return tvm, tvseg


def torchvision_segmentation(tvseg, name: str) -> torch.nn.Module:
    aux = {"aux_loss": True} if not name.startswith("lraspp") else {}
    return getattr(tvseg, name)(weights=None, weights_backbone=None, num_classes=21, **aux)


def layout(model: torch.nn.Module) -> dict:
    return {"num_params": sum(p.numel() for p in model.parameters()),
            "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()]}


def write_fixtures(tvm, tvseg) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    import torchvision

    for name, (ours, options) in SEGMENTATION.items():
        record = {"torchvision": torchvision.__version__, "edgeseg_model": ours, "edgeseg_options": options,
                  "num_classes": 21, **layout(torchvision_segmentation(tvseg, name))}
        (FIXTURES / f"{name}.json").write_text(json.dumps(record, indent=0))
    for name, ours in IMAGENET.items():
        record = {"torchvision": torchvision.__version__, "edgeseg_backbone": ours,
                  **layout(getattr(tvm, name)(weights=None))}
        (FIXTURES / f"imagenet_{name}.json").write_text(json.dumps(record, indent=0))
    print(f"wrote {len(SEGMENTATION) + len(IMAGENET)} fixtures to {FIXTURES}")


def compare_numerics(tvseg, size=(120, 160)) -> int:
    from edgeseg.models import build
    from edgeseg.models.weights import load_weights

    torch.manual_seed(0)
    failures = 0
    # Random weights through 101 layers give activations of ~1e6, so float rounding shows up in
    # absolute terms: the check is relative to the reference's largest logit.
    print(f"{'torchvision model':32s} {'max |diff|':>12s} {'relative':>10s} {'argmax agree':>13s}")
    for name, (ours, options) in SEGMENTATION.items():
        reference = torchvision_segmentation(tvseg, name).eval()
        with torch.no_grad():  # randomise BN statistics so they matter in the comparison
            for module in reference.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.1, 0.1)
                    module.running_var.uniform_(0.5, 1.5)
        model = load_weights(build(ours, 21, **options), reference.state_dict(), source=name).eval()
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            want, got = reference(x)["out"], model(x)
        diff = (want - got).abs().max().item()
        relative = diff / want.abs().max().item()
        agree = (want.argmax(1) == got.argmax(1)).float().mean().item()
        failures += relative > 1e-5
        print(f"{name:32s} {diff:12.2e} {relative:10.1e} {agree:13.4%}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torchvision-path", help="folder holding an unpacked torchvision wheel")
    parser.add_argument("action", choices=("fixtures", "numerics"))
    args = parser.parse_args(argv)
    tvm, tvseg = import_torchvision(args.torchvision_path)
    if args.action == "fixtures":
        write_fixtures(tvm, tvseg)
        return 0
    return 1 if compare_numerics(tvseg) else 0


if __name__ == "__main__":
    sys.exit(main())
