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
