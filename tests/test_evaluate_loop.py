"""The one evaluation loop (edgeseg.measure.evaluate) that checkpoint eval, engine eval, the INT8
budget and export parity share: scoring, the comparison with a reference, resizing, the callback."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgeseg.build.budget import ValidationSet
from edgeseg.data.base import DatasetInfo
from edgeseg.data.metrics import ConfusionMatrix
from edgeseg.errors import BadInputError, EdgesegError
from edgeseg.measure.evaluate import EvalSample, as_predictor, evaluate, format_comparison, label_writer, spread
from edgeseg.runtime.tail import upsample_argmax

CLASSES = ("a", "b", "c")
IGNORE = 255


def _samples(n: int = 3, size=(8, 12), seed: int = 0) -> list[EvalSample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        label = (image[..., 0] % 3).astype(np.uint8)
        label[0, :] = IGNORE  # an unlabelled row in every sample
        out.append(EvalSample(image, label, f"s{i}"))
    return out


def _labels(frames: np.ndarray) -> np.ndarray:
    """A fixed rule that is right on labelled pixels: class = blue % 3."""
    return (frames[..., 0] % 3).astype(np.uint8)


def _logits(frames: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) scores whose argmax is `_labels`."""
    return np.eye(3, dtype=np.float32)[_labels(frames)].transpose(0, 3, 1, 2)


def test_a_predictor_against_itself_agrees_everywhere_and_drops_nothing():
    samples = _samples()
    result = evaluate(as_predictor(_logits), samples, CLASSES, IGNORE, reference=as_predictor(_logits))
    assert result.metrics.miou == 1.0 and result.reference.miou == 1.0
    assert result.agreement == 1.0 and result.drop["miou"] == 0.0
    assert set(result.drop["per_class_iou"].values()) == {0.0}
    assert result.max_abs_logit_diff == 0.0
    assert result.pixels_compared == 3 * 7 * 12  # labelled pixels only (row 0 is ignored)
    assert result.to_dict()["pixel_agreement"] == 1.0 and "mIoU" in format_comparison(result)


def test_logits_and_labels_of_the_same_classes_score_the_same():
    samples = _samples()
    from_logits = evaluate(as_predictor(_logits), samples, CLASSES, IGNORE, reference=as_predictor(_labels))
    from_labels = evaluate(as_predictor(_labels), samples, CLASSES, IGNORE)
    assert from_logits.metrics == from_labels.metrics and from_logits.agreement == 1.0
    assert from_logits.max_abs_logit_diff is None  # logits against labels: no logits to compare
    assert from_labels.reference is None and from_labels.agreement is None and from_labels.to_dict().keys() == \
        from_labels.metrics.to_dict().keys()


def test_reference_that_differs_on_known_pixels_gives_the_exact_agreement():
    samples = _samples(2)

    def off_by_one(frames: np.ndarray) -> np.ndarray:
        labels = _labels(frames)
        labels[:, 1, :5] = (labels[:, 1, :5] + 1) % 3  # 5 labelled pixels wrong per frame
        labels[:, 0, :] = (labels[:, 0, :] + 1) % 3  # the ignored row: not counted
        return labels

    result = evaluate(as_predictor(_labels), samples, CLASSES, IGNORE, reference=as_predictor(off_by_one))
    assert result.pixels_compared == 2 * 7 * 12
    assert result.agreement == pytest.approx(1 - 2 * 5 / (2 * 7 * 12))
    assert result.metrics.miou == 1.0 and result.reference.miou < 1.0
    assert result.drop["miou"] == round(100 * (result.reference.miou - 1.0), 3) < 0  # the reference is worse
    # without labels every pixel counts, and nothing is scored
    unlabelled = [EvalSample(s.image) for s in samples]
    bare = evaluate(as_predictor(_labels), unlabelled, reference=as_predictor(off_by_one))
    assert bare.metrics is None and bare.pixels_compared == 2 * 8 * 12
    assert bare.agreement == pytest.approx(1 - 2 * (5 + 12) / (2 * 8 * 12))


def test_the_callback_sees_every_prediction_at_label_size_and_limit_stops_early():
    samples = _samples(4)
    seen = []
    evaluate(as_predictor(_labels, size=(4, 6)), samples, CLASSES, IGNORE,
             on_prediction=lambda sample, labels: seen.append((sample.name, labels.shape)))
    assert seen == [(f"s{i}", (8, 12)) for i in range(4)]
    seen.clear()
    evaluate(as_predictor(_labels), samples, CLASSES, IGNORE, limit=2, batch=2,
             on_prediction=lambda sample, labels: seen.append(sample.name))
    assert seen == ["s0", "s1"]


def test_frames_are_resized_to_the_predictor_and_labels_back_to_the_label():
    sample = _samples(1, size=(16, 24))[0]
    shapes = []

    def low_res(frames: np.ndarray) -> np.ndarray:  # (1, 8, 12, 3) in, 1/4-resolution logits out
        shapes.append(frames.shape)
        return _logits(frames)[:, :, ::4, ::4]

    seen = []
    evaluate(as_predictor(low_res, size=(8, 12)), [sample], CLASSES, IGNORE,
             on_prediction=lambda s, labels: seen.append(labels))
    frame = cv2.resize(sample.image, (12, 8), interpolation=cv2.INTER_LINEAR)
    expected = upsample_argmax(_logits(frame[None])[:, :, ::4, ::4], (8, 12))[0]
    assert shapes == [(1, 8, 12, 3)]
    np.testing.assert_array_equal(seen[0], cv2.resize(expected, (24, 16), interpolation=cv2.INTER_NEAREST))


def test_same_outputs_refuses_runners_that_disagree_on_shape():
    samples = [EvalSample(s.image) for s in _samples(2)]
    with pytest.raises(BadInputError, match="output shapes differ"):
        evaluate(as_predictor(_logits), samples, reference=as_predictor(_labels), same_outputs=True)
    shifted = evaluate(as_predictor(_logits), samples, reference=as_predictor(lambda f: _logits(f) + 0.25),
                       batch=2, same_outputs=True)
    assert shifted.max_abs_logit_diff == pytest.approx(0.25) and shifted.agreement == 1.0


def test_validation_set_scores_through_the_loop_on_any_subset():
    samples = _samples(3)
    frames = np.stack([cv2.resize(s.image, (6, 4), interpolation=cv2.INTER_LINEAR) for s in samples])
    val = ValidationSet("test", frames, [s.label for s in samples], 3, IGNORE)
    predictor = as_predictor(_logits)
    for indices in (None, [2, 0]):
        picked = range(3) if indices is None else indices
        matrix = ConfusionMatrix(3, IGNORE)
        for i in picked:
            labels = upsample_argmax(_logits(frames[i:i + 1]), (4, 6))[0]
            matrix.update(samples[i].label, cv2.resize(labels, (12, 8), interpolation=cv2.INTER_NEAREST))
        assert val.miou(predictor, indices) == pytest.approx(100 * matrix.compute().miou, abs=1e-12)


def test_a_dataset_with_other_classes_is_refused():
    class Data(list):
        info = DatasetInfo("four", ("a", "b", "c", "d"), ((0, 0, 0),) * 4)

    with pytest.raises(BadInputError, match="predicts 3 classes but four has 4"):
        evaluate(as_predictor(_labels), Data(_samples(1)), CLASSES, IGNORE)


def test_label_writer_saves_every_prediction_and_refuses_a_used_folder(tmp_path):
    samples = _samples(2)
    evaluate(as_predictor(_labels), samples, CLASSES, IGNORE, on_prediction=label_writer(tmp_path / "preds"))
    saved = sorted(p.name for p in (tmp_path / "preds").iterdir())
    assert saved == ["s0.png", "s1.png"]
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "preds" / "s1.png"), cv2.IMREAD_UNCHANGED),
                                  _labels(samples[1].image[None])[0])
    with pytest.raises(EdgesegError, match="not empty"):
        label_writer(tmp_path / "preds")


def test_keep_returns_frames_spread_over_the_evaluated_ones_with_both_label_maps():
    assert spread(10, 4) == [1, 3, 6, 8] and spread(3, 5) == [0, 1, 2] and spread(0, 4) == spread(5, 0) == []
    samples = _samples(6)

    def off_by_one(frames: np.ndarray) -> np.ndarray:
        labels = _labels(frames)
        labels[:, 1, :5] = (labels[:, 1, :5] + 1) % 3  # 5 labelled pixels differ per frame
        return labels

    seen = {}
    result = evaluate(as_predictor(_labels, size=(4, 6)), samples, CLASSES, IGNORE, reference=as_predictor(off_by_one),
                      limit=5, batch=2, keep=2, on_prediction=lambda sample, labels: seen.setdefault(sample.name, labels))
    assert [(f.index, f.name) for f in result.frames] == [(1, "s1"), (3, "s3")]  # spread over the 5 evaluated
    for f in result.frames:
        assert f.image is samples[f.index].image and f.label is samples[f.index].label
        np.testing.assert_array_equal(f.ours, seen[f.name])  # what was scored, at the label's size
        assert f.theirs.shape == f.label.shape == (8, 12)
        differ = (f.ours != f.theirs) & (f.label != IGNORE)
        assert f.disagreement == np.count_nonzero(differ) / np.count_nonzero(f.label != IGNORE)
    alone = evaluate(as_predictor(_labels), samples, CLASSES, IGNORE, keep=1)
    assert [f.index for f in alone.frames] == [3] and alone.frames[0].theirs is None
    assert alone.frames[0].disagreement is None and "frames" not in alone.to_dict()
    assert evaluate(as_predictor(_labels), samples, CLASSES, IGNORE).frames == []  # nothing kept by default


def test_the_loop_imports_no_torch():
    code = "import sys, edgeseg.measure.evaluate; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
