"""Class maps (edgeseg.data.class_map): a foreign network's classes scored as a dataset's.

One hand-made case runs through the file, small enough to score by hand: a 4-class model (road, truck,
car, grass) on CamVid's 11 classes, truck and car counted as CamVid's car, grass as nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.data.camvid import CAMVID_INFO
from edgeseg.data.cityscapes import CITYSCAPES_INFO
from edgeseg.data.class_map import (
    ClassMapFile,
    parse_class_map,
    read_class_map,
    require_same_classes,
    resolve_class_map,
    shipped_maps,
)
from edgeseg.data.metrics import ConfusionMatrix
from edgeseg.data.voc import VOC_INFO
from edgeseg.errors import BadInputError

MODEL = ("Road", "truck", "car", "grass")
CAMVID = CAMVID_INFO.classes
VOID = CAMVID_INFO.ignore_index  # 11
SKY, ROAD, CAR = CAMVID.index("sky"), CAMVID.index("road"), CAMVID.index("car")
MAP = {"map": {"road": "Road", "truck": "car", "2": 8}, "ignore": ["grass"]}


def _map(data=MAP, source="test.json"):
    return parse_class_map(data, source, "0" * 64).bind(MODEL, CAMVID, VOID)


def test_the_table_maps_names_loosely_and_indices_and_unlisted_classes_to_ignore():
    bound = _map()
    assert bound.lut.tolist() == [ROAD, CAR, CAR, VOID]
    assert bound.table() == {"Road": "road", "truck": "car", "car": "car", "grass": None}
    unlisted = _map({"map": {"ROAD": "road"}})  # case does not matter; truck, car, grass are left out
    assert unlisted.lut.tolist() == [ROAD, VOID, VOID, VOID]


def test_apply_is_one_lookup_over_whole_label_maps():
    labels = np.array([[[0, 1], [2, 3]], [[3, 2], [1, 0]]], np.uint8)  # (N, H, W)
    mapped = _map().apply(labels)
    assert mapped.shape == labels.shape and mapped.dtype == np.uint8
    assert mapped.tolist() == [[[ROAD, CAR], [CAR, VOID]], [[VOID, CAR], [CAR, ROAD]]]
    with pytest.raises(BadInputError, match="prediction holds class 4 but the class map's model has 4 classes"):
        _map().apply(np.array([4], np.uint8))


def test_scoring_turns_unmapped_predictions_into_misses_and_unreachable_truth_into_ignore():
    bound = _map()
    assert bound.score_predictions(np.array([0, 1, 2, 3])).tolist() == [ROAD, CAR, CAR, 11]  # 11: "none"
    assert bound.unscored == tuple(i for i in range(11) if i not in (ROAD, CAR))
    truth = np.array([SKY, ROAD, CAR, VOID], np.uint8)
    assert bound.score_labels(truth).tolist() == [VOID, ROAD, CAR, VOID]


def test_the_none_column_counts_misses_without_an_iou_of_its_own():
    cm = ConfusionMatrix(2, ignore_index=255, none_column=True)
    cm.update(np.array([0, 0, 1, 1, 255]), np.array([0, 2, 1, 0, 2]))  # one miss (2), one ignored pixel
    m = cm.compute(["a", "b"])
    assert m.pixels == 4 and m.pixel_acc == pytest.approx(2 / 4)
    assert m.per_class_iou == {"a": pytest.approx(1 / 3), "b": pytest.approx(1 / 2)}  # a: tp 1, gt 2, pred 2
    with pytest.raises(BadInputError, match="prediction holds class 2"):
        ConfusionMatrix(2).update(np.array([0]), np.array([2]))  # without the column, as before


@pytest.mark.parametrize("data, problem, listed", [
    ({"map": {"rood": "road"}}, "'rood' is not a class of the model", "did you mean 'Road'?"),
    ({"map": {"road": "street"}}, "'street' is not a class of the dataset", "0 sky, 1 building"),
    ({"map": {"7": "road"}}, "class index 7 is out of range: the model has 4 classes", "0 Road, 1 truck"),
    ({"map": {"road": 11}}, "class index 11 is out of range: the dataset has 11 classes (0-10)", "10 bicyclist"),
    ({"map": {"car": "car"}, "ignore": ["cars"]}, "'cars' is not a class of the model", "did you mean 'car'?"),
])
def test_unknown_classes_are_refused_listing_the_valid_ones(data, problem, listed):
    with pytest.raises(BadInputError) as err:
        _map(data)
    assert problem in err.value.problem and listed in err.value.fix


@pytest.mark.parametrize("data, problem", [
    ({"map": {"road": "road", "ROAD": "car"}}, "lists the model's class 'Road' twice"),
    ({"map": {"grass": "tree"}, "ignore": ["grass"]}, "lists the model's class 'grass' twice"),
    ({"map": {"grass": None}}, "maps none of the model's classes to a dataset class"),
    ({"map": {"road": "road"}, "extra": 1}, "unknown key 'extra'"),
    ({"road": "road"}, 'has no "map" object'),
    ({"map": {"road": ["road"]}}, "'road' maps to ['road'], not a class name, index or null"),
    ({"map": {}, "ignore": "grass"}, '"ignore" must be a list'),
])
def test_malformed_maps_are_refused_by_what_is_wrong(data, problem):
    with pytest.raises(BadInputError) as err:
        _map(data)
    assert problem in err.value.problem


def test_a_file_is_read_and_hashed_and_bad_files_are_refused(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(MAP))
    read = read_class_map(path)
    import hashlib

    assert isinstance(read, ClassMapFile) and not read.shipped
    assert read.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read.bind(MODEL, CAMVID, VOID).to_dict()["source"] == str(path)
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(BadInputError, match="is not readable JSON"):
        read_class_map(tmp_path / "broken.json")
    with pytest.raises(BadInputError, match="class-map file .*missing.json does not exist"):
        read_class_map(tmp_path / "missing.json")
    with pytest.raises(BadInputError, match="is a directory"):
        read_class_map(tmp_path)


def test_shipped_maps_are_found_by_name_and_a_typo_gets_a_suggestion():
    assert {"cityscapes-to-camvid", "voc-to-camvid"} <= set(shipped_maps())
    with pytest.raises(BadInputError) as err:
        read_class_map("cityscape-to-camvid")
    assert "neither a class-map file nor a shipped class map" in err.value.problem
    assert "did you mean 'cityscapes-to-camvid'?" in err.value.fix


def test_cityscapes_to_camvid_reaches_every_camvid_class():
    bound = resolve_class_map("cityscapes-to-camvid", CITYSCAPES_INFO.classes, CAMVID, VOID)
    assert bound.shipped and bound.unscored == ()
    table = bound.table()
    assert (table["truck"], table["rider"], table["traffic light"], table["vegetation"]) == \
        ("car", "bicyclist", "sign", "tree")


def test_voc_to_camvid_scores_the_road_users_only():
    bound = resolve_class_map("voc-to-camvid", VOC_INFO.classes, CAMVID, VOID)
    assert bound.table()["background"] is None and bound.table()["motorbike"] == "bicyclist"
    assert [CAMVID[i] for i in range(11) if i not in bound.unscored] == ["car", "pedestrian", "bicyclist"]


def test_same_classes_pass_loosely_and_differing_ones_are_refused_with_the_fix():
    require_same_classes([c.upper().replace(" ", "_") for c in CAMVID], CAMVID, "camvid")  # no error
    with pytest.raises(BadInputError) as err:
        require_same_classes(CITYSCAPES_INFO.classes, CAMVID, "camvid")
    assert "the model predicts 19 classes but camvid has 11" in err.value.problem
    assert "(model: road, sidewalk, building" in err.value.problem and "; camvid: sky, building" in err.value.problem
    assert "--class-map FILE" in err.value.fix and "cityscapes-to-camvid" in err.value.fix
    assert "docs/int8.md" in err.value.fix
    swapped = (CAMVID[1], CAMVID[0]) + CAMVID[2:]
    with pytest.raises(BadInputError, match=r"in another order\): class 0 is 'building' in the model, 'sky'"):
        require_same_classes(swapped, CAMVID, "camvid")
