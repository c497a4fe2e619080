"""Every registered network, every backbone: shapes, train/eval behaviour, a training step,
checkpoint round trip and output-stride switching, on small inputs."""

from __future__ import annotations

import pytest
import torch

from edgeseg.errors import BadInputError, CheckpointError, UnknownNameError
from edgeseg.models import build, entry, names
from edgeseg.models.weights import load_weights
from edgeseg.train import checkpoint

VARIANTS = [(n, b) for n in names() for b in (entry(n).backbones or (None,))]
ODD_SIZE = (70, 90)  # neither dimension a multiple of 32, like CamVid's 360x480
NUM_CLASSES = 5


def _build(name, backbone, **options):
    if backbone:
        options["backbone"] = backbone
    torch.manual_seed(0)
    return build(name, NUM_CLASSES, **options)


def _supports(name: str, option: str) -> bool:
    return option in entry(name).options


def test_registry_lists_every_family():
    expected = {"fcn32s", "fcn16s", "fcn8s", "fcn", "segnet", "segnet_basic", "unet", "pspnet", "deeplabv1",
                "deeplabv2", "deeplabv3", "deeplabv3plus", "refinenet", "refinenet_lw", "lraspp", "fastscnn"}
    assert expected <= set(names())


@pytest.mark.parametrize("name,backbone", VARIANTS, ids=[f"{n}-{b}" if b else n for n, b in VARIANTS])
def test_variant_forward_train_step_and_checkpoint(name, backbone, tmp_path):
    aux = {"aux": True} if _supports(name, "aux") else {}
    model = _build(name, backbone, **aux)

    # eval: a logits tensor at input resolution, even with an aux head built
    model.eval()
    x = torch.randn(1, 3, *ODD_SIZE)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, NUM_CLASSES, *ODD_SIZE)
    assert torch.isfinite(out).all()

    # train: aux heads add outputs; one SGD step changes the weights through the loss
    model.train()
    target = torch.randint(0, NUM_CLASSES, (2, *ODD_SIZE))
    outputs = model(torch.randn(2, 3, *ODD_SIZE))
    if aux:
        assert set(outputs) == {"out", "aux"}
        assert outputs["aux"].shape == (2, NUM_CLASSES, *ODD_SIZE)
        loss = sum(torch.nn.functional.cross_entropy(o, target) for o in outputs.values())
    else:
        assert isinstance(outputs, torch.Tensor)
        loss = torch.nn.functional.cross_entropy(outputs, target)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "a parameter got no gradient"
    assert any(g.abs().sum() > 0 for g in grads)

    # checkpoint round trip rebuilds the same network with the same outputs
    model.eval()
    with torch.no_grad():
        out = model(x)  # the training step moved the BatchNorm statistics
    path = tmp_path / "model.pt"
    checkpoint.save(path, model, {"classes": [f"c{i}" for i in range(NUM_CLASSES)]})
    restored, payload = checkpoint.build_from_checkpoint(path)
    assert payload["metadata"]["classes"][0] == "c0"
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(x), out)


STRIDE_MODELS = [
    ("deeplabv3", "resnet50"), ("deeplabv3", "mobilenetv3_large"), ("deeplabv3plus", "mobilenetv2"),
    ("deeplabv3plus", "xception65"), ("fcn", "resnet50"), ("pspnet", "resnet50"), ("deeplabv2", "resnet50")]


@pytest.mark.parametrize("name,backbone", STRIDE_MODELS)
def test_output_stride_switch_keeps_weights(name, backbone):
    model = _build(name, backbone, output_stride=16)
    with torch.no_grad():  # BatchNorm statistics of real activations, so random-init outputs are not flat
        model.train()(torch.randn(2, 3, 64, 64))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out16 = model(x)
        model.set_output_stride(8)
        out8 = model(x)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert out8.shape == out16.shape == (1, NUM_CLASSES, 64, 64)
    assert not torch.allclose(out8, out16), "changing the output stride changed nothing"
    fresh8 = _build(name, backbone, output_stride=8).eval()
    fresh8.load_state_dict(before)
    with torch.no_grad():
        torch.testing.assert_close(fresh8(x), out8)  # switching equals building at that stride


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        build("deeplabv3pls", 11)
    message = str(info.value)
    assert "deeplabv3pls" in message and "did you mean 'deeplabv3plus'" in message and "lraspp" in message


def test_unknown_backbone_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="valid backbones: mobilenetv3_large, resnet101, resnet50"):
        build("deeplabv3", 11, backbone="resnet18")


def test_unknown_option_is_refused_not_swallowed():
    with pytest.raises(UnknownNameError, match="option of lraspp 'output_strid'"):
        build("lraspp", 11, output_strid=8)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "11"])
def test_num_classes_must_be_positive_int(bad):
    with pytest.raises(BadInputError, match="num_classes must be a positive integer"):
        build("lraspp", bad)


def test_input_too_small_or_wrong_layout_is_named():
    model = build("lraspp", 3).eval()
    with pytest.raises(BadInputError, match="cannot take an input of 16x16"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(BadInputError, match=r"N x 3 x H x W tensor but got shape \(1, 64, 64, 3\)"):
        model(torch.randn(1, 64, 64, 3))
    with pytest.raises(BadInputError, match="float tensor"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_checkpoint_with_other_class_count_is_named(tmp_path):
    path = tmp_path / "camvid.pt"
    checkpoint.save(path, build("lraspp", 11))
    payload = checkpoint.load(path)
    with pytest.raises(CheckpointError, match="has 11 classes but the model was built with 21"):
        load_weights(build("lraspp", 21), payload["state_dict"], source="camvid.pt")


def test_checkpoint_of_another_model_names_the_keys(tmp_path):
    state = build("lraspp", 11).state_dict()
    with pytest.raises(CheckpointError, match="missing keys.*unexpected keys"):
        load_weights(build("deeplabv3", 11, backbone="mobilenetv3_large"), state)


def test_checkpoint_refuses_to_overwrite_and_rejects_garbage(tmp_path):
    path = tmp_path / "m.pt"
    model = build("lraspp", 2)
    checkpoint.save(path, model)
    with pytest.raises(Exception, match="already exists"):
        checkpoint.save(path, model)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path / "bad.pt")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
