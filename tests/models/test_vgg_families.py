"""FCN, SegNet, U-Net and DeepLab v1/v2: paper sizes, torchvision layouts, odd input sizes,
index unpooling, ImageNet loading and the output-stride switch."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.errors import CheckpointError
from edgeseg.models import build
from edgeseg.models.backbones import BACKBONES
from edgeseg.models.fcn import FixedUpsample, _crop, learned_upsample

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "torchvision"


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@functools.lru_cache(maxsize=None)
def cached(name: str, classes: int, **options) -> nn.Module:
    """Build each large model once per session (tests only read them)."""
    return build(name, classes, **options).eval()


@pytest.fixture(scope="module", autouse=True)
def _free_cached_models():
    yield
    cached.cache_clear()  # about 2 GB of weights, not needed by other test files


@pytest.mark.parametrize("name, classes, paper", [("fcn8s", 21, 134e6), ("segnet", 11, 29.5e6), ("unet", 2, 31.0e6)])
def test_paper_parameter_counts(name, classes, paper):
    assert abs(n_params(cached(name, classes)) - paper) / paper < 0.01


@pytest.mark.parametrize("backbone, expected", [("resnet50", 35_322_218), ("resnet101", 54_314_346)])
def test_fcn_resnet_is_torchvision_layout(backbone, expected):
    reference = fixture(f"fcn_{backbone}")
    model = build("fcn", 21, backbone=backbone, aux=True)
    assert n_params(model) == expected == reference["num_params"]
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == reference["state_dict"]
    if backbone == "resnet50":
        plain = build("fcn", 21, backbone=backbone)
        assert plain.aux_classifier is None
        assert n_params(plain) == expected - n_params(model.aux_classifier)
    model.train()
    out = model(torch.randn(2, 3, 32, 40))
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 21, 32, 40)


@pytest.mark.parametrize("name, options", [
    ("fcn32s", {}), ("fcn16s", {}), ("fcn8s", {}), ("segnet", {}), ("segnet_basic", {}),
    ("unet", {}), ("unet", {"bilinear": True}), ("unet", {"batch_norm": True}),
    ("deeplabv1", {}), ("deeplabv2", {"backbone": "resnet50"}),
])
def test_odd_sizes_keep_input_size(name, options):
    model = cached(name, 21, **options)
    with torch.no_grad():
        for size in ((77, 109), (model.min_input_size, model.min_input_size + 3)):
            assert model(torch.randn(1, 3, *size)).shape == (1, 21, *size)


def test_fcn_upsampling_is_centre_aligned_bilinear():
    """Deconvolution + crop at factor/2 equals half-pixel bilinear resizing away from the borders."""
    x = torch.randn(1, 3, 5, 6)
    for factor in (2, 8, 16, 32):
        up = _crop(FixedUpsample(3, factor)(x), (5 * factor, 6 * factor), factor // 2)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        torch.testing.assert_close(up[..., factor:-factor, factor:-factor], ref[..., factor:-factor, factor:-factor])
    up = _crop(learned_upsample(3)(x), (10, 12), 1)
    ref = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], ref[..., 2:-2, 2:-2])


def test_fcn_fixed_upsampling_is_not_a_parameter():
    model = cached("fcn8s", 21)
    assert "upscore.weight" not in model.state_dict()
    assert {n for n, _ in model.named_parameters() if "upscore" in n} == {"upscore2.weight", "upscore_pool4.weight"}


def test_vgg_layout_matches_torchvision():
    for name, pools in (("vgg16", (4, 9, 16, 23, 30)), ("vgg16_bn", (6, 13, 23, 33, 43))):
        backbone = BACKBONES[name]()
        assert [i for i, m in enumerate(backbone.features) if isinstance(m, nn.MaxPool2d)] == list(pools)
        ours = {k: list(v.shape) for k, v in backbone.state_dict().items()}
        mapped = {backbone.imagenet_key(k): s for k, s in fixture(f"imagenet_{name}")["state_dict"]}
        assert mapped.pop(None, None) is not None  # the classifier keys are skipped
        assert mapped == ours


def _unpool_records(model: nn.Module, pools: list[nn.Module], stages: list[nn.Module], x: torch.Tensor):
    """Run `model`, recording what each pool returned and what each decoder stage got and gave."""
    seen: dict[str, list] = {"pool": [], "stage_in": [], "stage_out": []}
    hooks = [p.register_forward_hook(lambda m, a, out: seen["pool"].append((a[0].clone(), out[0], out[1])))
             for p in pools]
    hooks += [s.register_forward_pre_hook(lambda m, a: seen["stage_in"].append(a[0])) for s in stages]
    hooks += [s.register_forward_hook(lambda m, a, out: seen["stage_out"].append(out)) for s in stages]
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("name", ["segnet", "segnet_basic"])
def test_segnet_decoder_unpools_with_encoder_indices(name):
    model = build(name, 4).eval()
    if name == "segnet":
        pools = [m for m in model.backbone.features if isinstance(m, nn.MaxPool2d)]
        stages = list(model.decoder)
    else:
        pools, stages = [model.pool], list(model.decoder)
    seen = _unpool_records(model, pools, stages, torch.randn(1, 3, 77, 109))
    encoded = list(reversed(seen["pool"]))  # deepest first, like the decoder
    values = [encoded[0][1]] + seen["stage_out"][:-1]
    for (pre_pool, _, indices), value, unpooled in zip(encoded, values, seen["stage_in"]):
        want = F.max_unpool2d(value, indices, 2, 2, output_size=pre_pool.shape[-2:])
        torch.testing.assert_close(unpooled, want, rtol=0, atol=0)


def test_segnet_output_depends_on_pool_positions():
    model = build("segnet_basic", 4).eval()
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        reference = model(x)

    def top_left(module, args, out):  # same values, every one claimed to come from its window's top left
        values, _ = out
        h, w = args[0].shape[-2:]
        rows = torch.arange(values.shape[-2])[:, None] * 2 * w
        cols = torch.arange(values.shape[-1])[None, :] * 2
        return values, (rows + cols).expand_as(values).contiguous()

    hook = model.pool.register_forward_hook(top_left)
    with torch.no_grad():
        moved = model(x)
    hook.remove()
    assert not torch.allclose(reference, moved)


@pytest.fixture(scope="module")
def vgg16_imagenet(tmp_path_factory) -> Path:
    """A file with torchvision's vgg16 keys and shapes (random values)."""
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=generator) for k, s in fixture("imagenet_vgg16")["state_dict"]}
    path = tmp_path_factory.mktemp("imagenet") / "vgg16.pth"
    torch.save(state, path)
    return path


def test_fcn_loads_and_convolutionalises_vgg16(vgg16_imagenet):
    state = torch.load(vgg16_imagenet, weights_only=True, mmap=True)
    model = build("fcn8s", 21, pretrained_backbone=str(vgg16_imagenet))
    for index in (0, 2, 28):
        assert torch.equal(model.backbone.features[index].weight, state[f"features.{index}.weight"])
        assert torch.equal(model.backbone.features[index].bias, state[f"features.{index}.bias"])
    assert torch.equal(model.fc6.weight, state["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(model.fc6.bias, state["classifier.0.bias"])
    assert torch.equal(model.fc7.weight.flatten(1), state["classifier.3.weight"])
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"])


def test_fcn_needs_vgg_classifier(tmp_path, vgg16_imagenet):
    state = torch.load(vgg16_imagenet, weights_only=True, mmap=True)
    features_only = tmp_path / "features.pth"
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, features_only)
    with pytest.raises(CheckpointError, match="classifier"):
        build("fcn32s", 21, pretrained_backbone=str(features_only))


def test_deeplabv1_loads_vgg16_features(vgg16_imagenet):
    state = torch.load(vgg16_imagenet, weights_only=True, mmap=True)
    model = build("deeplabv1", 21, pretrained_backbone=str(vgg16_imagenet))
    assert torch.equal(model.backbone.features[28].weight, state["features.28.weight"])
    assert model.backbone.features[28].dilation == (2, 2)  # conv5 is dilated at output stride 8
    assert model.backbone(torch.randn(1, 3, 72, 104))["pool5"].shape[-2:] == (9, 13)


def test_segnet_loads_vgg16_bn(tmp_path):
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.rand(s, generator=generator) if s else torch.tensor(0)  # classifier.0 left out: unused, 400 MB
             for k, s in fixture("imagenet_vgg16_bn")["state_dict"] if not k.startswith("classifier.0")}
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    model = build("segnet", 11, pretrained_backbone=str(path))
    for key in ("features.0.weight", "features.1.running_var", "features.41.weight"):
        assert torch.equal(model.backbone.state_dict()[key], state[key])


@pytest.mark.parametrize("name", ["deeplabv2", "fcn"])
def test_output_stride_switch_keeps_weights(name):
    model = build(name, 3, backbone="resnet50").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert model.backbone(x)["layer4"].shape[-2:] == (8, 10)
        model.set_output_stride(16)
        assert model.backbone(x)["layer4"].shape[-2:] == (4, 5)
        assert model(x).shape == (1, 3, 64, 80)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    if name == "deeplabv2":
        built16 = build(name, 3, backbone="resnet50", output_stride=16)
        assert [(k, v.shape) for k, v in built16.state_dict().items()] == [(k, v.shape) for k, v in after.items()]
