"""Instance datasets: COCO JSON, Cityscapes instanceIds and synthetic road scenes, on small data written here."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from edgeseg.data._synthetic_draw import CAR, POLE, Canvas
from edgeseg.data.instances import (
    DroppedAnnotationsWarning,
    InstanceDataset,
    masks_to_boxes,
    parse_instance_spec,
)
from edgeseg.data.instances.synthetic import MIN_PIXELS, SyntheticInstanceScenes
from edgeseg.data.synthetic import SyntheticRoadScenes
from edgeseg.errors import BadInputError, UnknownNameError
from edgeseg.measure.instance_metrics import evaluate_instances

H, W = 40, 60


def _rect(x0, y0, x1, y1, h=H, w=W) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: run lengths of the column-major mask, starting with a run of zeros."""
    flat = mask.ravel(order="F")
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(edges).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + runs}


def _write_coco(tmp_path, edit=None):
    """Three images: a person (polygon) and a car (RLE) with a crowd of cars; a negative image; one car."""
    images = tmp_path / "images"
    images.mkdir()
    for k in range(3):
        cv2.imwrite(str(images / f"img{k}.png"), np.full((H, W, 3), 40 * k, np.uint8))
    car = mask_utils.encode(np.asfortranarray(_rect(30, 10, 50, 25)))
    data = {
        "images": [{"id": 10 + k, "file_name": f"img{k}.png", "height": H, "width": W} for k in range(3)],
        "categories": [{"id": 7, "name": "person"}, {"id": 3, "name": "car"}],  # not in id order, ids with gaps
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [5, 5, 10, 20], "area": 200, "iscrowd": 0,
             "segmentation": [[5, 5, 15, 5, 15, 25, 5, 25]]},
            {"id": 2, "image_id": 10, "category_id": 3, "bbox": [30, 10, 20, 15], "area": 300, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": car["counts"].decode()}},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [0, 30, 60, 10], "area": 600, "iscrowd": 1,
             "segmentation": _uncompressed_rle(_rect(0, 30, 60, 40))},
            {"id": 4, "image_id": 12, "category_id": 3, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0,
             "segmentation": [[20, 20, 30, 20, 30, 30, 20, 30]]},
        ],
    }
    if edit:
        edit(data)
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images


def test_coco_masks_boxes_labels_and_crowd(tmp_path):
    ann, images = _write_coco(tmp_path)
    dataset = parse_instance_spec(f"coco:{ann}:{images}:val")
    assert (len(dataset), dataset.split, dataset.dropped) == (3, "val", 0)
    assert dataset.info.classes == ("car", "person") and dataset.info.category_ids == (3, 7)
    assert dataset.info.num_classes == 3 and dataset.image_names() == ["img0", "img1", "img2"]
    s = dataset[0]
    assert s.image.shape == (H, W, 3) and s.image.dtype == np.uint8
    assert (s.name, s.image_id) == ("img0", 10)
    assert s.labels.dtype == np.int64 and s.labels.tolist() == [2, 1, 1]
    assert s.iscrowd.dtype == np.uint8 and s.iscrowd.tolist() == [0, 0, 1]
    assert s.boxes.dtype == np.float32 and s.boxes.tolist() == [[5, 5, 15, 25], [30, 10, 50, 25], [0, 30, 60, 40]]
    assert s.masks.shape == (3, H, W) and s.masks.dtype == np.uint8 and set(np.unique(s.masks)) <= {0, 1}
    assert np.array_equal(s.masks[1], _rect(30, 10, 50, 25)) and np.array_equal(s.masks[2], _rect(0, 30, 60, 40))
    assert s.masks[0][10, 10] == 1 and s.masks[0][2, 2] == 0 and s.masks[0].sum() >= 190


def test_coco_image_without_annotations_is_a_negative_image(tmp_path):
    ann, images = _write_coco(tmp_path)
    s = parse_instance_spec(f"coco:{ann}:{images}")[1]
    assert s.boxes.shape == (0, 4) and s.labels.shape == (0,) and s.masks.shape == (0, H, W) and s.iscrowd.shape == (0,)


def test_coco_degenerate_boxes_are_dropped_and_counted(tmp_path):
    def edit(data):
        data["annotations"].append({"id": 5, "image_id": 12, "category_id": 3, "bbox": [3, 3, 0, 5],
                                    "iscrowd": 0, "segmentation": [[3, 3, 3, 3, 3, 8, 3, 8]]})
        data["annotations"].append({"id": 6, "image_id": 12, "category_id": 7, "bbox": [70, 3, 5, 5],  # off-image
                                    "iscrowd": 0, "segmentation": [[70, 3, 75, 3, 75, 8, 70, 8]]})

    ann, images = _write_coco(tmp_path, edit)
    with pytest.warns(DroppedAnnotationsWarning, match="dropped 2 annotations whose box has no width or height"):
        dataset = parse_instance_spec(f"coco:{ann}:{images}")
    assert dataset.dropped == 2 and dataset[2].labels.tolist() == [1]
    assert len(dataset.coco_ground_truth()["annotations"]) == 4


def test_coco_ground_truth_keeps_ids_and_scores_perfect_predictions(tmp_path):
    ann, images = _write_coco(tmp_path)
    dataset = parse_instance_spec(f"coco:{ann}:{images}")
    gt = dataset.coco_ground_truth()
    json.dumps(gt)  # a report can store it
    assert [c["id"] for c in gt["categories"]] == [3, 7] and [c["label"] for c in gt["categories"]] == [1, 2]
    assert [a["area"] for a in gt["annotations"]] == [200, 300, 600, 100]  # the file's own areas
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 0, 1, 0]
    predictions = {}
    for i in range(len(dataset)):
        s, keep = dataset[i], dataset[i].iscrowd == 0
        predictions[s.image_id] = {"boxes": s.boxes[keep], "labels": s.labels[keep], "masks": s.masks[keep],
                                   "scores": np.ones(keep.sum())}
    metrics = evaluate_instances(gt, predictions)
    assert metrics.box_ap == pytest.approx(100) and metrics.mask_ap == pytest.approx(100)
    assert (metrics.images, metrics.instances) == (3, 3)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("annotations"), "is not a COCO annotation file: it has no annotations list"),
    (lambda d: d.pop("categories"), "is not a COCO annotation file: it has no categories list"),
    (lambda d: d["annotations"][0].update(image_id=99), "annotation 1 .* refers to image_id 99, which the file does "
                                                        "not list"),
    (lambda d: d["annotations"][1].update(category_id=5), "annotation 2 .* has category_id 5, which the file does not"),
    (lambda d: d["annotations"][1].pop("segmentation"), "annotation 2 of .* has no segmentation"),
    (lambda d: d["images"][0].pop("height"), "image 10 of .* has no height"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2]), r"annotation 1 of .* has bbox \[1, 2\]"),
])
def test_coco_bad_files_name_the_problem(tmp_path, edit, message):
    ann, images = _write_coco(tmp_path, edit)
    with pytest.raises(BadInputError, match=message):
        parse_instance_spec(f"coco:{ann}:{images}")


def test_coco_not_json_or_not_an_object(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("[1, 2]")
    with pytest.raises(BadInputError, match="is not a COCO annotation file .a JSON list"):
        parse_instance_spec(f"coco:{path}:{tmp_path}")
    path.write_text("{nope")
    with pytest.raises(BadInputError, match="is not JSON"):
        parse_instance_spec(f"coco:{path}:{tmp_path}")


def test_coco_missing_or_resized_image_is_named(tmp_path):
    ann, images = _write_coco(tmp_path)
    (images / "img1.png").unlink()
    cv2.imwrite(str(images / "img2.png"), np.zeros((H // 2, W // 2, 3), np.uint8))
    dataset = parse_instance_spec(f"coco:{ann}:{images}")
    dataset[0]
    with pytest.raises(BadInputError, match="img1.png does not exist"):
        dataset[1]
    with pytest.raises(BadInputError, match=f"img2.png is {W // 2}x{H // 2} but .*instances.json says it is {W}x{H}"):
        dataset[2]


def _write_cityscapes(tmp_path, split="val"):
    """One image: car objects 26000, 26001, a person 24002, a group of cars (26), a caravan (29001), road (7)."""
    ids = np.full((H, W), 7, np.uint16)
    ids[5:15, 5:20] = 26000
    ids[5:15, 30:40] = 26001
    ids[20:35, 2:8] = 24002
    ids[30:40, 40:60] = 26
    ids[0:4, 50:60] = 29001
    for stem in ("aachen_000000_000019", "aachen_000001_000019"):
        image = tmp_path / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png"
        label = tmp_path / "gtFine" / split / "aachen" / f"{stem}_gtFine_instanceIds.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image), np.zeros((H, W, 3), np.uint8))
        cv2.imwrite(str(label), ids)
    return tmp_path, ids


def test_cityscapes_instances_objects_and_groups(tmp_path):
    root, ids = _write_cityscapes(tmp_path)
    dataset = parse_instance_spec(f"cityscapes-instances:{root}:val")
    assert dataset.info.classes[:3] == ("person", "rider", "car") and dataset.info.category_ids[2] == 26
    s = dataset[0]
    assert (s.name, s.image_id, s.image.shape) == ("aachen_000000_000019", 1, (H, W, 3))
    # values in ascending order: the car group (26), then 24002, 26000, 26001; the caravan is background
    assert s.labels.tolist() == [3, 1, 3, 3] and s.iscrowd.tolist() == [1, 0, 0, 0]
    assert s.boxes.tolist() == [[40, 30, 60, 40], [2, 20, 8, 35], [5, 5, 20, 15], [30, 5, 40, 15]]
    assert np.array_equal(s.masks[2], (ids == 26000).astype(np.uint8))
    assert s.masks.sum() == ((ids == 26) | (ids == 24002) | (ids == 26000) | (ids == 26001)).sum()
    gt = dataset.coco_ground_truth()
    assert [a["category_id"] for a in gt["annotations"][:4]] == [26, 24, 26, 26]
    assert [a["area"] for a in gt["annotations"][:4]] == [200, 90, 150, 100]


def test_cityscapes_instances_bad_files(tmp_path):
    root, _ = _write_cityscapes(tmp_path)
    folder = root / "gtFine" / "val" / "aachen"
    (folder / "aachen_000000_000019_gtFine_instanceIds.png").unlink()
    cv2.imwrite(str(folder / "aachen_000001_000019_gtFine_instanceIds.png"), np.zeros((H, W), np.uint8))
    dataset = parse_instance_spec(f"cityscapes-instances:{root}", "val")
    with pytest.raises(BadInputError, match="aachen_000000_000019_gtFine_instanceIds.png does not exist"):
        dataset[0]
    with pytest.raises(BadInputError, match="is uint8 .* not a 16-bit"):
        dataset[1]
    cv2.imwrite(str(folder / "aachen_000001_000019_gtFine_instanceIds.png"), np.zeros((H, W + 2), np.uint16))
    with pytest.raises(BadInputError, match=f"is {W}x{H} but its instance map .* is {W + 2}x{H}"):
        dataset[1]
    with pytest.raises(BadInputError, match="no images under"):
        parse_instance_spec(f"cityscapes-instances:{root}:train")


def test_canvas_occluder_cuts_the_instance():
    cv = Canvas(40, 40, f=40.0, horizon=20.0, vx=20.0, cam_h=1.0, instances=True)
    cv.label[:] = 0
    cv.instance_id = 5
    cv.poly([(-1, 0, 2), (1, 0, 2), (1, 2, 2), (-1, 2, 2)], (0, 0, 255), CAR)
    cv.poly([(-1, 0, 2), (1, 0, 2), (1, 2, 2), (-1, 2, 2)], (0, 255, 0), None)  # texture: no class, no id
    assert (cv.instance == 5).sum() == (cv.label == CAR).sum() > 0
    cv.instance_id = 0
    cv.line((0, 0, 1.5), (0, 3, 1.5), 0.1, (9, 9, 9), POLE)
    assert ((cv.instance == 5) == (cv.label == CAR)).all() and (cv.instance[cv.label == POLE] == 0).all()
    assert Canvas(8, 8, 8.0, 4.0, 4.0, 1.0).instance is None  # the semantic painter keeps no instance map


@pytest.fixture(scope="module")
def synthetic():
    return SyntheticInstanceScenes(8, "val", size=(90, 120))


def test_synthetic_instances_agree_with_the_semantic_scene(synthetic):
    semantic = SyntheticRoadScenes(8, "val", size=(90, 120))
    seen = set()
    for i in range(len(synthetic)):
        s, label = synthetic.render(i)
        reference = semantic[i]
        assert np.array_equal(s.image, reference.image) and np.array_equal(label, reference.label)
        assert (s.name, s.image_id) == (reference.name, i + 1)
        assert s.masks.dtype == np.uint8 and s.masks.shape[1:] == (90, 120) and (s.masks.sum(0) <= 1).all()
        assert (s.masks.sum((1, 2)) >= MIN_PIXELS).all() and not s.iscrowd.any()
        assert np.array_equal(s.boxes, masks_to_boxes(s.masks))
        for mask, cls in zip(s.masks.astype(bool), s.labels.tolist()):
            camvid_class = {1: 8, 2: 9, 3: 10}[cls]  # car, pedestrian, bicyclist
            assert (label[mask] == camvid_class).all()
        seen |= set(s.labels.tolist())
    assert seen == {1, 2, 3}


def test_synthetic_instances_are_deterministic_per_split_and_index(synthetic):
    again = SyntheticInstanceScenes(8, "val", size=(90, 120))[3]
    first = synthetic[3]
    for a, b in zip((first.image, first.boxes, first.labels, first.masks), (again.image, again.boxes, again.labels,
                                                                          again.masks)):
        assert np.array_equal(a, b)
    other = SyntheticInstanceScenes(8, "train", size=(90, 120))[3]
    assert not np.array_equal(first.image, other.image) and other.name == "synthetic_train_00003"
    with pytest.raises(IndexError):
        synthetic[8]


def test_synthetic_ground_truth_scores_itself_perfectly(synthetic):
    gt = synthetic.coco_ground_truth()
    assert [c["name"] for c in gt["categories"]] == ["car", "pedestrian", "bicyclist"]
    predictions = {s.image_id: {"boxes": s.boxes, "labels": s.labels, "masks": s.masks,
                                "scores": np.linspace(1, 0.5, len(s.labels))} for s in map(synthetic.__getitem__,
                                                                                            range(len(synthetic)))}
    metrics = evaluate_instances(gt, predictions)
    assert metrics.mask_ap == pytest.approx(100) and metrics.box_ap == pytest.approx(100)


def test_specs(tmp_path):
    dataset = parse_instance_spec("synthetic-instances:3:test")
    assert (len(dataset), dataset.split) == (3, "test") and isinstance(dataset, InstanceDataset)
    assert len(parse_instance_spec("synthetic-instances", "val")) == 50
    assert len(parse_instance_spec("synthetic-instances")) == 200
    with pytest.raises(BadInputError, match="did you mean val"):
        parse_instance_spec("synthetic-instances:4:vall")
    with pytest.raises(BadInputError, match="image count 'x'"):
        parse_instance_spec("synthetic-instances:x:val")
    with pytest.raises(UnknownNameError) as info:
        parse_instance_spec("kitti:PATH")
    assert all(kind in info.value.fix for kind in ("coco", "cityscapes-instances", "synthetic-instances"))
    with pytest.raises(BadInputError, match="semantic segmentation dataset.*"):
        parse_instance_spec(f"cityscapes:{tmp_path}")
    with pytest.raises(BadInputError, match="is a folder, not a dataset spec"):
        parse_instance_spec(str(tmp_path))
    with pytest.raises(BadInputError, match="write coco:ANNOTATIONS.json:IMAGES_DIR"):
        parse_instance_spec("coco:only.json")
    with pytest.raises(BadInputError, match="COCO annotation file .* does not exist"):
        parse_instance_spec(f"coco:{tmp_path / 'none.json'}:{tmp_path}")
