"""Dataset specs that are almost right: a mistyped split, a bare folder, an image-only folder, paths that
are not what they should be. Each is refused naming the likely intent, not as a missing folder."""

from __future__ import annotations

import pytest
from fakedata import write_camvid

from edgeseg.data import parse_spec, split_suggestion
from edgeseg.data.folder import image_files
from edgeseg.errors import BadInputError


@pytest.mark.parametrize("typo,meant", [("vall", "val"), ("tain", "train"), ("VAL", "val"), ("tst", "test"),
                                        ("validation", "val"), ("trainn", "train")])
def test_a_split_typo_is_refused_with_the_split_it_means(camvid_root, typo, meant):
    with pytest.raises(BadInputError, match=f"unknown split '{typo}'.*did you mean {meant}\\?") as info:
        parse_spec(f"camvid:{camvid_root}:{typo}")
    assert f"camvid:{camvid_root}:{meant}" in info.value.fix


def test_a_split_typo_of_a_missing_folder_is_still_a_split_typo(tmp_path):
    with pytest.raises(BadInputError, match="did you mean val"):
        parse_spec(f"camvid:{tmp_path / 'nowhere'}:vall")
    with pytest.raises(BadInputError, match="did you mean val"):
        parse_spec("synthetic:4:vall")
    with pytest.raises(BadInputError, match="did you mean test"):
        parse_spec("synthetic:tset")


def test_an_unknown_split_after_an_existing_folder_is_named(camvid_root):
    with pytest.raises(BadInputError, match="unknown split 'bogus'") as info:
        parse_spec(f"camvid:{camvid_root}:bogus")
    assert "train, val, test" in info.value.fix


def test_a_folder_whose_name_holds_a_colon_is_still_a_folder(tmp_path):
    root = write_camvid(tmp_path / "camvid:vall")  # exists: the last component is part of the path
    assert len(parse_spec(f"camvid:{root}", "val")) == 4


def test_split_suggestion_leaves_paths_and_counts_alone():
    assert split_suggestion("/data/camvid") is None and split_suggestion("200") is None
    assert split_suggestion("camvid") is None and split_suggestion("val") == "val"


def test_a_bare_folder_is_told_to_name_its_format(camvid_root):
    with pytest.raises(BadInputError, match="is a folder, not a dataset spec") as info:
        parse_spec(str(camvid_root))
    assert f"camvid:{camvid_root}:val" in info.value.fix


def test_folder_with_one_part_explains_that_labels_are_needed(tmp_path):
    with pytest.raises(BadInputError, match="names images only") as info:
        parse_spec(f"folder:{tmp_path}")
    assert "folder:IMAGES_DIR,MASKS_DIR" in info.value.fix and "--calib" in info.value.fix


def test_folder_dataset_paths_say_what_they_are(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.write_text("not a folder")
    with pytest.raises(BadInputError, match="masks folder .* is a file, not a folder"):
        parse_spec(f"folder:{images},{masks}")
    masks.unlink()
    masks.mkdir()
    (tmp_path / "classes_dir").mkdir()
    with pytest.raises(BadInputError, match="classes file .* is a directory, not a file"):
        parse_spec(f"folder:{images},{masks},{tmp_path / 'classes_dir'}")


def test_synthetic_with_zero_images_is_refused():
    with pytest.raises(BadInputError, match="synthetic:0 has no images"):
        parse_spec("synthetic:0")


def test_an_empty_image_folder_points_at_the_dataset_spec(camvid_root):
    with pytest.raises(BadInputError, match="holds no images.*holds the folders") as info:
        image_files(camvid_root)
    assert f"camvid:{camvid_root}:train" in info.value.fix


# -- a directory, FIFO or device where a dataset file is expected: named as what it is ------------------------
def _swap(path, kind: str) -> None:
    """Replace the file at `path` with a directory, a FIFO or a link to a character device."""
    import os

    path.unlink()
    if kind == "a directory":
        path.mkdir()
    elif kind == "a FIFO":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/null")


@pytest.mark.parametrize("kind", ["a directory", "a FIFO", "a character device"])
@pytest.mark.parametrize("which", ["image", "label"])
def test_a_dataset_file_that_is_not_a_file_says_what_it_is(tmp_path, which, kind):
    root = write_camvid(tmp_path / "cv", count=2)
    path = root / ("train/0001TP_train_001.jpg" if which == "image" else "trainannot/0001TP_train_001.png")
    _swap(path, kind)
    dataset = parse_spec(f"camvid:{root}")
    dataset[0]
    with pytest.raises(BadInputError, match=f"{which} {path} is {kind}") as err:  # not "does not exist", never blocks
        dataset[1]
    assert "not a file" in err.value.problem


@pytest.mark.parametrize("kind", ["a directory", "a FIFO"])
def test_a_split_list_that_is_not_a_file_says_what_it_is(tmp_path, kind):
    root = write_camvid(tmp_path / "cv", count=1)
    _swap(root / "val.txt", kind)
    with pytest.raises(BadInputError, match=f"list file .*val.txt is {kind}"):
        parse_spec(f"camvid:{root}:val")


def test_a_dataset_root_that_is_a_file_says_so(tmp_path):
    root = tmp_path / "camvid-root"
    root.write_text("not a folder")
    for spec in (f"camvid:{root}:val", f"cityscapes:{root}:val", f"voc:{root}:val"):
        with pytest.raises(BadInputError, match=f"folder {root} is a file, not a folder"):
            parse_spec(spec)


def test_voc_split_list_and_labels_say_what_they_are(tmp_path):
    root = tmp_path / "VOC2012"
    (root / "ImageSets" / "Segmentation" / "val.txt").mkdir(parents=True)
    with pytest.raises(BadInputError, match="split list .*val.txt is a directory, not a file"):
        parse_spec(f"voc:{root}:val")
    from edgeseg.data.voc import read_voc_label

    (tmp_path / "label.png").mkdir()
    with pytest.raises(BadInputError, match="label .*label.png is a directory, not a file"):
        read_voc_label(tmp_path / "label.png")


def test_a_found_classes_file_that_is_a_directory_is_named_not_skipped(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    (masks / "classes.txt").mkdir(parents=True)
    with pytest.raises(BadInputError, match="classes file .*classes.txt is a directory, not a file"):
        parse_spec(f"folder:{images},{masks}")


def test_an_image_folder_that_is_a_file_says_so(tmp_path):
    (tmp_path / "frames").write_text("")
    with pytest.raises(BadInputError, match="image folder .*frames is a file, not a folder"):
        image_files(tmp_path / "frames")


def test_a_video_folder_that_is_a_file_says_so(tmp_path):
    from edgeseg.data.synthetic import write_road_video

    (tmp_path / "videos").write_text("")
    with pytest.raises(BadInputError, match="folder .*videos is a file, not a folder"):
        write_road_video(tmp_path / "videos" / "road.mp4", frames=1)
