"""Metrics equal an independent computation exactly, and follow the documented conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseg.data.metrics import ConfusionMatrix, format_table
from edgeseg.errors import BadInputError


def test_hand_computed_case():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(target, pred)
    m = cm.compute(["a", "b", "c", "d"])
    # class 0: tp 1, fp 1 (a 2 predicted 0), fn 1 -> 1/3; class 1: tp 3, fp 1, fn 0 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    assert m.per_class_iou == {"a": pytest.approx(1 / 3), "b": pytest.approx(3 / 4), "c": pytest.approx(1 / 2), "d": None}
    assert m.miou == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)  # class d absent everywhere: left out
    assert m.per_class_acc == {"a": pytest.approx(1 / 2), "b": 1.0, "c": pytest.approx(1 / 2), "d": None}
    assert m.pixel_acc == pytest.approx(5 / 7)  # the ignored pixel is not counted
    assert m.pixels == 7
    assert m.fwiou == pytest.approx(2 / 7 * (1 / 3) + 3 / 7 * (3 / 4) + 2 / 7 * (1 / 2))


def test_predicted_but_absent_class_counts_zero_in_miou_and_not_in_macc():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1]), np.array([0, 2, 1]))
    m = cm.compute()
    assert m.per_class_iou["2"] == 0.0 and m.per_class_acc["2"] is None
    assert m.miou == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m.macc == pytest.approx((1 / 2 + 1) / 2)


def _independent(target, pred, k, ignore):
    """A plain per-class loop over boolean masks (the textbook definition)."""
    valid = target != ignore
    ious, accs = [], []
    for c in range(k):
        t, p = (target == c) & valid, (pred == c) & valid
        inter, union = np.logical_and(t, p).sum(), np.logical_or(t, p).sum()
        ious.append(inter / union if union else math.nan)
        accs.append(inter / t.sum() if t.sum() else math.nan)
    pixel = ((target == pred) & valid).sum() / valid.sum()
    return np.nanmean(ious), np.nanmean(accs), pixel, ious


@pytest.mark.parametrize("seed", range(5))
def test_streaming_equals_independent_computation(seed):
    rng = np.random.default_rng(seed)
    k, ignore = 6, 255
    targets = rng.integers(0, k, (4, 20, 30))
    targets[rng.random(targets.shape) < 0.1] = ignore
    targets[targets == 5] = 4  # class 5 never in the ground truth
    preds = np.where(rng.random(targets.shape) < 0.7, targets, rng.integers(0, k, targets.shape))
    preds[preds == ignore] = 0
    cm = ConfusionMatrix(k, ignore)
    for t, p in zip(targets, preds):  # batches streamed one at a time
        cm.update(t, p)
    m = cm.compute()
    miou, macc, pixel, ious = _independent(targets, preds, k, ignore)
    assert m.miou == pytest.approx(miou, abs=1e-12)
    assert m.macc == pytest.approx(macc, abs=1e-12)
    assert m.pixel_acc == pytest.approx(pixel, abs=1e-12)
    for i, iou in enumerate(ious):
        got = m.per_class_iou[str(i)]
        assert (got is None and math.isnan(iou)) or got == pytest.approx(iou, abs=1e-12)


def test_bad_inputs_are_named():
    cm = ConfusionMatrix(3, ignore_index=11)
    with pytest.raises(BadInputError, match="prediction shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(BadInputError, match="prediction holds class 5 but there are 3"):
        cm.update(np.zeros(4, int), np.full(4, 5))
    with pytest.raises(BadInputError, match="ground truth holds class 7"):
        cm.update(np.full(4, 7), np.zeros(4, int))


def test_table_shows_every_class_and_the_means():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 1]), np.array([0, 0]))
    table = format_table(cm.compute(["road", "car"]))
    assert "road" in table and "car" in table and "mIoU" in table and "25.00" in table
