"""Every dataset format, on small data written here in that format's real layout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fakedata import write_camvid

from edgeseg.data import parse_spec
from edgeseg.data.cityscapes import CITYSCAPES_INFO
from edgeseg.data.voc import VOC_INFO
from edgeseg.errors import BadInputError, EdgesegError, UnknownNameError


@pytest.mark.parametrize("segnet_style", [False, True])
def test_camvid_both_layouts(tmp_path, segnet_style):
    root = write_camvid(tmp_path / "cv", count=3, segnet_style=segnet_style)
    train = parse_spec(f"camvid:{root}")
    val = parse_spec(f"camvid:{root}:val")
    assert (len(train), len(val), train.split, val.split) == (3, 3, "train", "val")
    sample = val[1]
    assert sample.image.shape == (48, 64, 3) and sample.image.dtype == np.uint8
    assert sample.label.shape == (48, 64) and sample.name == "0001TP_val_001"
    assert train.info.num_classes == 11 and train.info.ignore_index == 11
    assert train.info.classes[3] == "road" and train.info.palette[3] == (128, 64, 128)


def test_camvid_on_the_split_named_by_default(tmp_path):
    root = write_camvid(tmp_path / "cv", count=2)
    assert parse_spec(f"camvid:{root}", "val").split == "val"


def test_missing_label_names_the_file(tmp_path):
    root = write_camvid(tmp_path / "cv", count=2)
    (root / "trainannot" / "0001TP_train_001.png").unlink()
    dataset = parse_spec(f"camvid:{root}")
    dataset[0]
    with pytest.raises(BadInputError, match="0001TP_train_001.png does not exist"):
        dataset[1]


def test_size_mismatch_and_out_of_range_labels_are_named(tmp_path):
    root = write_camvid(tmp_path / "cv", count=2)
    cv2.imwrite(str(root / "trainannot" / "0001TP_train_000.png"), np.zeros((10, 10), np.uint8))
    label = np.zeros((48, 64), np.uint8)
    label[0, 0] = 40
    cv2.imwrite(str(root / "trainannot" / "0001TP_train_001.png"), label)
    dataset = parse_spec(f"camvid:{root}")
    with pytest.raises(BadInputError, match="is 64x48 but its label .*0001TP_train_000.png is 10x10"):
        dataset[0]
    with pytest.raises(BadInputError, match=r"values \[40\] outside 0..10"):
        dataset[1]


def test_corrupt_image_and_empty_split(tmp_path):
    root = write_camvid(tmp_path / "cv", count=1)
    (root / "train" / "0001TP_train_000.jpg").write_bytes(b"garbage")
    with pytest.raises(BadInputError, match="cannot be read"):
        parse_spec(f"camvid:{root}")[0]
    (root / "val.txt").write_text("")
    with pytest.raises(EdgesegError, match="val split has no images"):
        parse_spec(f"camvid:{root}:val")


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    root = tmp_path / "cityscapes"
    (root / "leftImg8bit" / "val" / "ulm").mkdir(parents=True)
    (root / "gtFine" / "val" / "ulm").mkdir(parents=True)
    cv2.imwrite(str(root / "leftImg8bit" / "val" / "ulm" / "ulm_000000_000019_leftImg8bit.png"),
                np.zeros((8, 8, 3), np.uint8))
    ids = np.array([[7, 8, 26, 33], [0, 1, 23, 4]], np.uint8).repeat(4, axis=0).repeat(2, axis=1)
    cv2.imwrite(str(root / "gtFine" / "val" / "ulm" / "ulm_000000_000019_gtFine_labelIds.png"), ids)
    dataset = parse_spec(f"cityscapes:{root}:val")
    label = dataset[0].label
    assert label[0, ::2].tolist() == [0, 1, 13, 18]  # road, sidewalk, car, bicycle
    assert label[4, ::2].tolist() == [255, 255, 10, 255]  # unlabeled ids ignored, sky = 10
    assert dataset.info is CITYSCAPES_INFO and dataset.info.num_classes == 19


def test_voc_reads_palette_colours_back_to_ids(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    ids = np.array([[0, 15, 7, 255]], np.uint8).repeat(4, axis=0)
    palette = np.array(VOC_INFO.palette + ((224, 224, 192),), np.uint8)
    rgb = palette[np.where(ids == 255, 21, ids)]
    cv2.imwrite(str(root / "SegmentationClass" / "2007_000032.png"), rgb[..., ::-1])
    cv2.imwrite(str(root / "JPEGImages" / "2007_000032.jpg"), np.zeros((4, 4, 3), np.uint8))
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000032\n")
    dataset = parse_spec(f"voc:{tmp_path / 'VOCdevkit'}:val")
    assert dataset[0].label[0].tolist() == [0, 15, 7, 255]
    assert dataset.info.classes[15] == "person" and dataset.info.palette[15] == (192, 128, 128)


def test_folder_with_classes_file(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(masks / "a.png"), np.ones((8, 8), np.uint8))
    (tmp_path / "classes.txt").write_text("background\nlane 255 255 0\n")
    dataset = parse_spec(f"folder:{images},{masks}")
    assert dataset.info.classes == ("background", "lane") and dataset.info.palette[1] == (255, 255, 0)
    assert dataset[0].label.max() == 1
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(BadInputError, match="no classes.txt"):
        parse_spec(f"folder:{images},{masks}")


def test_bad_specs_are_named(tmp_path):
    with pytest.raises(UnknownNameError, match="did you mean 'camvid'"):
        parse_spec("camvd:/x")
    with pytest.raises(BadInputError, match="does not exist"):
        parse_spec(f"camvid:{tmp_path / 'nowhere'}")
    with pytest.raises(BadInputError, match="folder:IMAGES_DIR,MASKS_DIR"):
        parse_spec("folder:onlyone")
