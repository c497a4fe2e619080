"""`edgeseg eval --class-map` and the INT8 budget's validation set with a class map: a network whose classes
are not the dataset's, scored in the dataset's classes, compared with its reference in its own.

The case is scored by hand. A 4-class model (road, truck, car, grass) on CamVid; the map counts truck and
car as CamVid's car and grass as nothing. Ground truth and predictions, 2x4 pixels (tiled 2x2 on disk):

    truth       road road  car   car        ours   road grass truck car       reference: ours with
                car  sky   void  road              road car   car   road      truck for car at (0, 3)

Sky is reached by no model class, so its pixel is not scored; void never is. Of the 6 scored pixels,
road: 2 right, 1 predicted grass (a miss), 1 car pixel predicted road: IoU 2/4; car: 2 right of 3,
none extra: IoU 2/3. mIoU (1/2 + 2/3) / 2 = 7/12, pixel accuracy 4/6. The reference scores the same
(truck is car) but disagrees with ours on 1 of the 7 labelled pixels in the model's classes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.data.camvid import CAMVID_INFO
from edgeseg.errors import BadInputError

MODEL = ("road", "truck", "car", "grass")
TRUTH = np.array([[3, 3, 8, 8], [8, 0, 11, 3]], np.uint8)  # CamVid ids: road 3, car 8, sky 0, void 11
OURS = np.array([[0, 3, 1, 2], [0, 2, 2, 0]], np.uint8)  # model ids
THEIRS = OURS.copy()
THEIRS[0, 3] = 1  # truck where ours says car: the same CamVid class, another model class
TILE = (2, 2)
MIOU, PIXEL_ACC, AGREEMENT = 7 / 12, 4 / 6, 6 / 7
MAP = {"map": {"road": "road", "truck": "car", "car": "car"}, "ignore": ["grass"]}


def _image() -> np.ndarray:
    """BGR: blue holds our model's class ids, green the reference's (what the hand-made engines read)."""
    return np.stack([np.tile(OURS, TILE), np.tile(THEIRS, TILE), np.zeros_like(np.tile(OURS, TILE))], axis=-1)


def _camvid(root: Path) -> Path:
    """A one-image CamVid val split, PNG (lossless: the pixel values are the predictions)."""
    for folder in ("val", "valannot"):
        (root / folder).mkdir(parents=True)
    cv2.imwrite(str(root / "val" / "f0.png"), _image())
    cv2.imwrite(str(root / "valannot" / "f0.png"), np.tile(TRUTH, TILE))
    (root / "val.txt").write_text("val/f0.png valannot/f0.png\n")
    return root


def _engine(out: Path, channel: int, classes=MODEL) -> Path:
    """An ONNX Runtime engine whose labels are one channel of the frame, with a manifest as built ones have."""
    from onnx import TensorProto, helper, save

    from edgeseg import __version__
    from edgeseg.io import MANIFEST_NAME
    from edgeseg.manifest import SCHEMA_VERSION, hash_files

    h, w = TRUTH.shape[0] * TILE[0], TRUTH.shape[1] * TILE[1]
    frames = helper.make_tensor_value_info("frames", TensorProto.UINT8, [1, h, w, 3])
    labels = helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, h, w])
    index = helper.make_tensor("channel", TensorProto.INT64, [], [channel])
    graph = helper.make_graph([helper.make_node("Gather", ["frames", "channel"], ["labels"], axis=3)], "channel",
                              [frames], [labels], [index])
    out.mkdir(parents=True)
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(out / "model.onnx"))
    manifest = {
        "name": out.name, "model": {"name": "hand-made", "num_classes": len(classes)}, "classes": list(classes),
        "palette": [[i * 40, 0, 0] for i in range(len(classes))], "ignore_index": 255,
        "input": {"name": "frames", "shape": [1, h, w, 3], "dtype": "uint8", "layout": "NHWC", "color": "BGR",
                  "preprocess": "fused"},
        "output": {"name": "labels", "kind": "labels", "dtype": "uint8", "shape": [1, h, w]},
        "precision": {"requested": "fp32", "as_run": "fp32"},
        "backend": {"name": "onnxruntime", "engine": "model.onnx"},
        "onnx": {"file": "model.onnx"}, "hardware": {}, "files": hash_files(out, ["model.onnx"]),
        "build_seconds": 0.0, "created": "2026-12-02T00:00:00+00:00", "command": "hand-made",
        "edgeseg_version": __version__, "schema_version": SCHEMA_VERSION}
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    return out


@pytest.fixture
def split(tmp_path):
    """The CamVid split and the class-map file."""
    class_map = tmp_path / "four-to-camvid.json"
    class_map.write_text(json.dumps(MAP))
    return {"data": f"camvid:{_camvid(tmp_path / 'camvid')}:val", "map": class_map, "tmp": tmp_path}


@pytest.fixture
def case(split):
    """The split with two hand-made engines: ours (blue) and the reference (green)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return {**split, "ours": _engine(split["tmp"] / "ours", 0), "theirs": _engine(split["tmp"] / "theirs", 1)}


def _eval(case, *extra: str) -> list[str]:
    return ["eval", "--engine", str(case["ours"]), "--data", case["data"], "--no-progress", *extra]


def test_eval_with_a_class_map_scores_in_the_datasets_classes_and_agrees_in_the_models(case, capsys):
    from edgeseg.cli.main import main

    out, predictions = case["tmp"] / "eval.json", case["tmp"] / "predictions"
    assert main(_eval(case, "--class-map", str(case["map"]), "--reference", str(case["theirs"]), "--json", str(out),
                      "--save-predictions", str(predictions))) == 0
    printed = capsys.readouterr().out
    assert f"class map {case['map']}" in printed and "3 of 4 model classes onto 11 dataset classes" in printed
    data = json.loads(out.read_text())
    assert data["miou"] == pytest.approx(MIOU) and data["pixel_acc"] == pytest.approx(PIXEL_ACC)
    assert list(data["per_class_iou"]) == list(CAMVID_INFO.classes)
    assert data["per_class_iou"]["road"] == pytest.approx(0.5) and data["per_class_iou"]["car"] == pytest.approx(2 / 3)
    assert data["per_class_iou"]["sky"] is None and data["pixels"] == 6 * TILE[0] * TILE[1]
    assert data["reference"]["miou"] == pytest.approx(MIOU) and data["miou_drop_points"] == 0
    assert data["pixel_agreement"] == pytest.approx(AGREEMENT)  # counted in the model's classes
    import hashlib

    record = data["class_map"]
    assert record["sha256"] == hashlib.sha256(case["map"].read_bytes()).hexdigest()
    assert record["table"] == {"road": "road", "truck": "car", "car": "car", "grass": None}
    assert "sky" in record["unscored"] and "car" not in record["unscored"]
    saved = cv2.imread(str(predictions / "f0.png"), cv2.IMREAD_UNCHANGED)  # in CamVid's ids, void where none
    assert saved.tolist() == np.tile(np.array([[3, 11, 8, 8], [3, 8, 8, 3]], np.uint8), TILE).tolist()
    assert Path(data["samples"]["strip"]).suffix == ".jpg"  # the strip is drawn in CamVid's classes


def test_a_shipped_map_is_named_and_unknown_names_are_refused_before_the_work(case, capsys):
    from edgeseg.cli.main import main

    bad = case["tmp"] / "bad.json"
    bad.write_text(json.dumps({"map": {"road": "street"}}))
    assert main(_eval(case, "--class-map", str(bad))) != 0
    err = capsys.readouterr().err
    assert "'street' is not a class of the dataset" in err and "3 road" in err
    assert main(_eval(case, "--class-map", "cityscapes-to-camvid")) != 0  # a Cityscapes map, a 4-class model
    assert "'sidewalk' is not a class of the model" in capsys.readouterr().err


def test_mismatched_classes_without_a_map_are_refused_with_the_fix(case, capsys):
    from edgeseg.cli.main import main

    assert main(_eval(case)) != 0
    err = capsys.readouterr().err
    assert "the model predicts 4 classes but camvid has 11" in err
    assert "(model: road, truck, car, grass; camvid: sky, building" in err
    assert "--class-map FILE" in err and "voc-to-camvid" in err


def test_the_evaluation_loop_takes_the_map_and_keeps_frames_in_the_datasets_classes():
    from edgeseg.data.class_map import parse_class_map
    from edgeseg.measure.evaluate import EvalSample, as_predictor, evaluate

    class Split(list):
        info = CAMVID_INFO

    bound = parse_class_map(MAP, "m").bind(MODEL, CAMVID_INFO.classes, CAMVID_INFO.ignore_index)
    split = Split([EvalSample(np.zeros((2, 4, 3), np.uint8), TRUTH, "f0")])
    result = evaluate(as_predictor(lambda f: OURS[None]), split, MODEL, 255, as_predictor(lambda f: THEIRS[None]),
                      keep=1, class_map=bound)
    assert result.metrics.miou == pytest.approx(MIOU) and result.agreement == pytest.approx(AGREEMENT)
    (frame,) = result.frames
    assert frame.ours.tolist() == [[3, 11, 8, 8], [3, 8, 8, 3]] and frame.disagreement == pytest.approx(1 / 7)
    with pytest.raises(BadInputError, match="the model predicts 4 classes"):
        evaluate(as_predictor(lambda f: OURS[None]), split, MODEL, 255)
    with pytest.raises(BadInputError, match="resolved for other model classes"):
        evaluate(as_predictor(lambda f: OURS[None]), split, ("a", "b", "c", "d"), 255, class_map=bound)


def test_the_budgets_validation_set_scores_through_the_map(split):
    from edgeseg.build.budget import open_validation
    from edgeseg.measure.evaluate import as_predictor

    size = _image().shape[:2]
    blue = as_predictor(lambda frames: frames[..., 0])  # our predictions, as the engine reads them
    case = split
    val = open_validation(case["data"], size, 4, progress=False, class_map=str(case["map"]), model_classes=MODEL)
    assert val.num_classes == 11 and val.miou(blue) == pytest.approx(100 * MIOU)
    assert val.class_map_record()["table"]["grass"] is None
    by_index = case["tmp"] / "by-index.json"
    by_index.write_text(json.dumps({"map": {"0": "road", "1": "car", "2": "car"}}))
    unnamed = open_validation(case["data"], size, 4, progress=False, class_map=str(by_index))
    assert unnamed.miou(blue) == pytest.approx(100 * MIOU)
    with pytest.raises(BadInputError, match="the model predicts 4 classes") as err:
        open_validation(case["data"], size, 4, progress=False, model_classes=MODEL)
    assert "--class-map" in err.value.fix
    with pytest.raises(BadInputError, match="has 11 classes, the model 4"):
        open_validation(case["data"], size, 4, progress=False)


def test_the_budget_report_names_the_map_it_measured_through():
    from edgeseg.build.budget import BudgetReport

    record = {"source": "cityscapes-to-camvid", "sha256": "0" * 64}
    report = BudgetReport(0.5, "camvid:PATH:val", 2, 50.0, 49.8, 49.8, True, "all-int8", class_map=record)
    assert "on camvid:PATH:val through class map cityscapes-to-camvid (2 images)" in report.summary()
    assert report.to_dict()["class_map"] == record
    assert "class map" not in BudgetReport(0.5, "v", 2, 50.0, 49.8, 49.8, True, "all-int8").summary()
