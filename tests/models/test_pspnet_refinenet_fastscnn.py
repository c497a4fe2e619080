"""PSPNet, RefineNet / Light-Weight RefineNet, Fast-SCNN and the Xception-65 backbone.

Family-specific behaviour only; shapes/train/eval/save/load/backward of every registered model
are covered by the registry-wide tests.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import edgeseg.models as zoo
from edgeseg.errors import BadInputError
from edgeseg.models._blocks import upsample_to
from edgeseg.models.backbones import build_backbone
from edgeseg.models.fastscnn import PyramidPooling as FastPyramidPooling
from edgeseg.models.pspnet import PyramidPooling

ODD = (72, 104)  # not a multiple of 32 (like CamVid's 360x480)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name, options", [
    ("pspnet", {}),
    ("pspnet", {"output_stride": 16, "aux": False}),
    ("refinenet", {"backbone": "resnet50"}),
    ("refinenet_lw", {}),
    ("refinenet_lw", {"backbone": "mobilenetv2"}),
    ("fastscnn", {"aux": True}),
])
def test_eval_output_matches_odd_input_size(name, options):
    model = zoo.build(name, 3, **options).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *ODD))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 3, *ODD)


@pytest.mark.parametrize("ppm_cls, args", [(PyramidPooling, (16,)), (FastPyramidPooling, (16, 16))])
def test_pyramid_pooling_equals_adaptive_avg_pool2d(ppm_cls, args):
    ppm = ppm_cls(*args).eval()
    x = torch.randn(2, 16, 7, 11)  # bins 2, 3 and 6 do not divide 7 or 11
    with torch.no_grad():
        got = ppm(x)
        pooled = [upsample_to(stage(F.adaptive_avg_pool2d(x, b)), x.shape[-2:]) for b, stage in zip(ppm.bins, ppm.stages)]
        want = torch.cat([x, *pooled], dim=1)
        if hasattr(ppm, "project"):
            want = ppm.project(want)
    torch.testing.assert_close(got, want)


def test_pspnet_aux_only_in_training():
    model = zoo.build("pspnet", 2)  # aux defaults to True (the paper's auxiliary loss)
    assert model.aux_classifier is not None
    x = torch.randn(2, 3, 40, 40)  # batch 2: the bin-1 branch's BN needs more than one value in training
    out = model.train()(x)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (2, 2, 40, 40)
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    no_aux = zoo.build("pspnet", 2, aux=False).train()
    assert isinstance(no_aux(x), torch.Tensor)


def test_fastscnn_aux_head_only_in_training():
    model = zoo.build("fastscnn", 4, aux=True)
    x = torch.randn(2, 3, 64, 96)
    out = model.train()(x)
    assert set(out) == {"out", "aux"}
    assert all(v.shape == (2, 4, 64, 96) for v in out.values())
    with torch.no_grad():
        assert isinstance(model.eval()(x), torch.Tensor)
    assert isinstance(zoo.build("fastscnn", 4).train()(x), torch.Tensor)


def test_pspnet_output_stride_switch_keeps_weights():
    model = zoo.build("pspnet", 3, aux=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, *ODD)
    with torch.no_grad():
        assert model.backbone(x)["layer4"].shape[-2:] == (9, 13)  # ceil(72/8), ceil(104/8)
        model.set_output_stride(16)
        assert model.backbone(x)["layer4"].shape[-2:] == (5, 7)
        assert model(x).shape == (1, 3, *ODD)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.min_input_size == 16
    # a model built at stride 16 takes the stride-8 model's weights as they are
    zoo.build("pspnet", 3, aux=False, output_stride=16).load_state_dict(before, strict=True)
    model.set_output_stride(8)
    assert model.min_input_size == 8
    with pytest.raises(BadInputError):
        model.set_output_stride(32)
    with pytest.raises(BadInputError):
        zoo.build("pspnet", 3, output_stride=4)


def test_smallest_inputs():
    for name, size in (("pspnet", 8), ("fastscnn", 32), ("refinenet_lw", 32)):
        options = {"backbone": "mobilenetv2"} if name == "refinenet_lw" else {}
        model = zoo.build(name, 2, **options).eval()
        assert model.min_input_size == size
        with torch.no_grad():
            assert model(torch.randn(1, 3, size, size + 3)).shape == (1, 2, size, size + 3)
        with pytest.raises(BadInputError):
            model(torch.randn(1, 3, size - 1, 64))


def test_fastscnn_parameter_count_matches_paper():
    model = zoo.build("fastscnn", 19)
    count = _params(model)
    assert abs(count - 1.11e6) / 1.11e6 < 0.05, count
    with torch.no_grad():  # the init keeps an untrained net's global branch alive in eval mode
        assert model.eval().global_features(model.learning_to_downsample(torch.randn(1, 3, 64, 64))).std() > 0.1


def test_refinenet_lw_parameter_counts_match_paper():
    # Nekrasov et al. report 27M (ResNet-50) and 3.3M (MobileNetV2)
    assert abs(_params(zoo.build("refinenet_lw", 21)) - 27e6) / 27e6 < 0.05
    assert abs(_params(zoo.build("refinenet_lw", 21, backbone="mobilenetv2")) - 3.3e6) / 3.3e6 < 0.05


def test_refinenet_lw_mobilenetv2_taps_one_feature_per_stride():
    model = zoo.build("refinenet_lw", 5, backbone="mobilenetv2").eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, 64, 64))
    assert {k: (v.shape[1], v.shape[-1]) for k, v in features.items()} == {
        "layer1": (24, 16), "layer2": (32, 8), "layer3": (96, 4), "layer4": (320, 2)}


def test_refinenet_cascade_reaches_stride_4():
    model = zoo.build("refinenet", 2, backbone="resnet50").eval()
    seen = {}
    model.refine1.register_forward_hook(lambda m, i, o: seen.update(refine1=o.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, *ODD))
    assert seen["refine1"] == (1, 256, 18, 26)
    assert len(model.refine4.crp.convs) == 2


@pytest.mark.slow  # Xception-65 at three output strides (10 s)
def test_xception65_strides():
    backbone = build_backbone("xception65", ("xception65",)).eval()
    assert backbone.channels == {"low": 128, "out": 2048}
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = backbone(x)
        assert out["low"].shape == (1, 128, 16, 16)
        assert out["out"].shape == (1, 2048, 4, 4)  # default output stride 16
        assert 0.1 < out["out"].std() < 100  # init neither loses nor blows up the signal
        backbone.set_output_stride(8)
        out = backbone(x)
        assert out["low"].shape == (1, 128, 16, 16)
        assert out["out"].shape == (1, 2048, 8, 8)
        backbone.set_output_stride(32)
        assert backbone(torch.randn(1, 3, *ODD))["out"].shape == (1, 2048, 3, 4)  # ceil(72/32), ceil(104/32)
    after = backbone.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert backbone.imagenet_key("entry.0.shortcut.0.weight") == "entry.0.shortcut.0.weight"
    assert 35e6 < _params(backbone) < 45e6
