"""Every registered network, every backbone: shapes, train/eval behaviour, one SGD step (the exact update, and
descent), the checkpoint round trip (every variant's architecture on the meta device, the small variants' weights
through a file) and output-stride switching, on small inputs."""

from __future__ import annotations

import pytest
import torch

from edgeseg.errors import BadInputError, CheckpointError, UnknownNameError
from edgeseg.models import build, entry, names
from edgeseg.models.weights import load_weights
from edgeseg.train import checkpoint

VARIANTS = [(n, b) for n in names("semantic") for b in (entry(n).backbones or (None,))]
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
    assert expected <= set(names("semantic"))
    assert names("instance") == ["maskrcnn"] and set(names()) == set(names("semantic")) | {"maskrcnn"}


# Variants whose weights round-trip through a real checkpoint file (fastscnn, lraspp, segnet_basic, the
# MobileNet ones: about 90 MB in all). The others (VGG/ResNet/Xception: 80-520 MB each, 4.8 GiB in all)
# round-trip their architecture on the meta device; writing their bytes would test torch.save again.
WEIGHTS_ROUND_TRIP_MAX = 20_000_000
SGD_LR = 1e-3
DESCENT_FRACTIONS = (1e-4, 1e-3, 1e-2)  # of the loss: a step's first-order decrease (1e-5 is float32 noise)
IDS = [f"{n}-{b}" if b else n for n, b in VARIANTS]


def _state_numel(name: str, backbone: str | None) -> int:
    """Elements in the variant's state dict, counted on the meta device (no memory, no initialization)."""
    with torch.device("meta"):
        return sum(t.numel() for t in _build(name, backbone).state_dict().values())


SMALL = {v for v in VARIANTS if _state_numel(*v) <= WEIGHTS_ROUND_TRIP_MAX}
# The large variants' forward and backward passes: 1-6 s each on a quiet 2-core machine (50 s together), 10-50 s
# each when it is shared; outside the fast lane (-m "not slow"), whose round trips still build every variant
TRAIN_VARIANTS = [pytest.param(*v, id=i, marks=() if v in SMALL else pytest.mark.slow) for v, i in zip(VARIANTS, IDS)]


def _loss(model, images, target, aux: bool):
    """Cross-entropy of the batch (plus the aux head's), checking the train-mode outputs on the way."""
    outputs = model(images)
    if aux:
        assert set(outputs) == {"out", "aux"}
        assert outputs["aux"].shape == (len(images), NUM_CLASSES, *ODD_SIZE)
        return sum(torch.nn.functional.cross_entropy(o, target) for o in outputs.values())
    assert isinstance(outputs, torch.Tensor)
    return torch.nn.functional.cross_entropy(outputs, target)


@pytest.mark.parametrize("name,backbone", TRAIN_VARIANTS)
def test_variant_forward_and_sgd_step(name, backbone):
    aux = _supports(name, "aux")
    model = _build(name, backbone, **({"aux": True} if aux else {}))

    # eval: a logits tensor at input resolution, even with an aux head built
    model.eval()
    x = torch.randn(1, 3, *ODD_SIZE)
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, NUM_CLASSES, *ODD_SIZE)
    assert torch.isfinite(out).all()

    # train: aux heads add outputs; every trainable parameter gets a finite gradient, one SGD step moves each
    # by exactly -lr * its gradient, and the gradient is a descent direction: a small enough step along it
    # lowers the loss of the batch it was computed on
    model.train()
    images, target = torch.randn(2, 3, *ODD_SIZE), torch.randint(0, NUM_CLASSES, (2, *ODD_SIZE))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.SGD([p for _, p in trainable], lr=SGD_LR)

    def batch_loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks on every pass: only the weights change the loss
        return _loss(model, images, target, aux)

    optimizer.zero_grad()
    loss = batch_loss()
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in trainable if p.grad is None]
    assert not missing, f"parameters got no gradient: {missing[:5]}"
    broken = [n for n, p in trainable if not torch.isfinite(p.grad).all()]
    assert not broken, f"non-finite gradients: {broken[:5]}"
    assert any(p.grad.abs().sum() > 0 for _, p in trainable)
    before = {n: p.detach().clone() for n, p in trainable}
    optimizer.step()
    eps = torch.finfo(torch.float32).eps
    for n, p in trainable:
        expected = before[n].add(p.grad, alpha=-SGD_LR)  # SGD's own update: bit-identical on the CPU today
        if not torch.equal(p.detach(), expected):  # else within a few float32 roundings of it
            ulps = ((p.detach() - expected).abs() / (expected.abs() * eps).clamp_min(1e-30)).max().item()
            assert ulps <= 4, f"{n} moved {ulps:.3g} ulps away from weight - lr * grad"
    assert any(not torch.equal(p.detach(), before[n]) for n, p in trainable), "the step moved nothing"

    # Descent: a step of lr = f * loss / |grad|^2 against the gradient lowers the loss by f * loss to first
    # order, and below the same step along it (their difference cancels the second-order term). Random-init
    # networks differ by 10^9 in |grad|^2 (FCN-32s ~5e-5 behind its zero-initialized score layer, where a fixed
    # lr of 1e-3 changes the loss by less than float32 resolves; DeepLabV3+ ResNet-101 ~1e5, so sharp that
    # steps of f = 1e-2 either way lower its loss), hence the scaled step and the two-sided comparison.
    first = loss.item()
    squared_norm = sum(p.grad.pow(2).sum() for _, p in trainable).item()

    def loss_at(lr: float) -> float:
        for n, p in trainable:
            p.copy_(before[n] - lr * p.grad)
        return batch_loss().item()

    tried = {}
    with torch.no_grad():
        for fraction in DESCENT_FRACTIONS:
            lr = fraction * first / squared_norm
            down, up = tried[f"{lr:.3g}"] = loss_at(lr), loss_at(-lr)
            if down < first and down < up:
                break
    assert any(down < first and down < up for down, up in tried.values()), (
        f"no step against the gradient lowered the loss {first:.6f} below the same step along it: {tried}")


@pytest.mark.parametrize("name,backbone", VARIANTS, ids=IDS)
def test_variant_checkpoint_round_trip(name, backbone, tmp_path):
    options = {"aux": True} if _supports(name, "aux") else {}
    classes = {"classes": [f"c{i}" for i in range(NUM_CLASSES)]}

    # every variant: the checkpoint records what rebuilds the same architecture (name, options, class count,
    # then keys, shapes and dtypes); on the meta device the tensors hold no data and the file is kilobytes
    with torch.device("meta"):
        shape_only = _build(name, backbone, **options)
    checkpoint.save(tmp_path / "meta.pt", shape_only, classes)
    payload = checkpoint.load(tmp_path / "meta.pt")
    assert (payload["model"], payload["options"], payload["num_classes"]) == (name, shape_only.edgeseg_options,
                                                                              NUM_CLASSES)
    assert payload["metadata"]["classes"][0] == "c0"
    if backbone:
        assert payload["options"]["backbone"] == backbone
    with torch.device("meta"):
        rebuilt = build(payload["model"], payload["num_classes"], **payload["options"])
    load_weights(rebuilt, payload["state_dict"], source="meta.pt")  # CheckpointError names any mismatch
    layout = {k: (tuple(v.shape), v.dtype) for k, v in shape_only.state_dict().items()}
    assert {k: (tuple(v.shape), v.dtype) for k, v in payload["state_dict"].items()} == layout
    assert {k: (tuple(v.shape), v.dtype) for k, v in rebuilt.state_dict().items()} == layout
    if (name, backbone) not in SMALL:
        return  # the bytes of its tensors go through the same torch.save as the small variants' below

    # small variants: the weights themselves through a real file, and the same outputs
    model = _build(name, backbone, **options).eval()
    with torch.no_grad():  # BatchNorm statistics off their initial values, so the buffers are checked too
        for buffer in model.buffers():
            buffer.copy_(torch.rand_like(buffer) + 0.5 if buffer.is_floating_point() else torch.full_like(buffer, 7))
    x = torch.randn(1, 3, *ODD_SIZE)
    with torch.no_grad():
        out = model(x)
    checkpoint.save(tmp_path / "model.pt", model, classes)
    restored, payload = checkpoint.build_from_checkpoint(tmp_path / "model.pt")
    assert payload["metadata"]["classes"][0] == "c0"
    state, again = model.state_dict(), restored.state_dict()
    assert state.keys() == again.keys()
    assert all(torch.equal(state[k], again[k]) for k in state), "a tensor changed in the round trip"
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(x), out)


STRIDE_MODELS = [
    ("deeplabv3", "resnet50"), ("deeplabv3", "mobilenetv3_large"), ("deeplabv3plus", "mobilenetv2"),
    pytest.param("deeplabv3plus", "xception65", marks=pytest.mark.slow),  # 5 s quiet, 14-45 s shared
    ("fcn", "resnet50"), ("pspnet", "resnet50"), ("deeplabv2", "resnet50")]


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
