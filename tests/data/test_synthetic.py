"""The procedural road scenes: deterministic, well-formed, road-like, and a coherent video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.data.camvid import CAMVID_INFO
from edgeseg.data.synthetic import SyntheticRoadScenes, road_video, write_road_video
from edgeseg.errors import BadInputError

SKY, ROAD, VOID = 0, 3, 11


@pytest.fixture(scope="module")
def train20():
    dataset = SyntheticRoadScenes(20, "train")
    return [dataset[i] for i in range(len(dataset))]


def test_info_is_camvid_renamed():
    info = SyntheticRoadScenes(1).info
    assert info.name == "synthetic"
    assert (info.classes, info.palette, info.ignore_index) == (CAMVID_INFO.classes, CAMVID_INFO.palette, VOID)


def test_same_index_same_sample_and_new_instance_same_sample():
    a = SyntheticRoadScenes(10, seed=7)
    first, again, fresh = a[3], a[3], SyntheticRoadScenes(10, seed=7)[3]
    for other in (again, fresh):
        assert np.array_equal(first.image, other.image) and np.array_equal(first.label, other.label)
        assert first.name == other.name == "synthetic_train_00003"


def test_splits_and_seeds_give_different_images():
    samples = [SyntheticRoadScenes(1, split)[0] for split in ("train", "val", "test")]
    samples.append(SyntheticRoadScenes(1, "train", seed=1)[0])
    for i in range(len(samples)):
        for j in range(i + 1, len(samples)):
            assert not np.array_equal(samples[i].image, samples[j].image)
    assert [s.name for s in samples[:3]] == ["synthetic_train_00000", "synthetic_val_00000", "synthetic_test_00000"]


def test_shapes_dtypes_and_label_values(train20):
    for sample in train20:
        assert sample.image.shape == (360, 480, 3) and sample.image.dtype == np.uint8
        assert sample.label.shape == (360, 480) and sample.label.dtype == np.uint8
        assert sample.label.max() <= VOID
    small = SyntheticRoadScenes(2, size=(64, 96))[1]
    assert small.image.shape == (64, 96, 3) and small.label.shape == (64, 96)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_class_appears_in_the_first_20_images(split, train20):
    samples = train20 if split == "train" else [SyntheticRoadScenes(20, split)[i] for i in range(20)]
    seen = set()
    for sample in samples:
        seen |= set(np.unique(sample.label).tolist())
    missing = [CAMVID_INFO.classes[c] for c in range(11) if c not in seen]
    assert not missing, f"classes never drawn in {split}[:20]: {missing}"


def test_road_below_sky_above(train20):
    h = train20[0].label.shape[0]
    rows = np.arange(h)[:, None]
    road_low = road_all = sky_high = sky_all = 0
    for sample in train20:
        road, sky = sample.label == ROAD, sample.label == SKY
        road_low += (road & (rows >= h // 2)).sum()
        road_all += road.sum()
        sky_high += (sky & (rows < h // 2)).sum()
        sky_all += sky.sum()
    assert road_all > 0.15 * len(train20) * sample.label.size  # the road is a big part of a road scene
    assert road_low / road_all > 0.9
    assert sky_high / sky_all > 0.95


def test_index_past_the_end_raises_index_error():
    dataset = SyntheticRoadScenes(3)
    assert dataset[-1].name == "synthetic_train_00002"
    with pytest.raises(IndexError):
        dataset[3]
    with pytest.raises(IndexError):
        dataset[-4]
    assert dataset.image_names() == [f"synthetic_train_0000{i}" for i in range(3)]


@pytest.mark.parametrize("kwargs, words", [
    ({"count": 0}, "count"), ({"count": -5}, "count"), ({"count": 2.5}, "count"),
    ({"size": (32, 480)}, "64x64"), ({"size": (360, 63)}, "64x64"), ({"size": "big"}, "size"),
    ({"split": "training"}, "split"),
])
def test_bad_arguments_raise_bad_input_error_with_a_fix(kwargs, words):
    with pytest.raises(BadInputError) as caught:
        SyntheticRoadScenes(**kwargs)
    assert words in caught.value.problem and caught.value.fix


def test_written_video_reads_back_with_its_frames_and_size(tmp_path):
    path = write_road_video(tmp_path / "road.mp4", frames=30, size=(128, 160), fps=15)
    assert path == tmp_path / "road.mp4" and [p.name for p in tmp_path.iterdir()] == ["road.mp4"]
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == 30
    assert frames[0].shape == (128, 160, 3)


def test_video_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "road.mp4"
    path.write_bytes(b"keep me")
    with pytest.raises(BadInputError) as caught:
        write_road_video(path, frames=2, size=(64, 64))
    assert str(path) in caught.value.problem and "overwrite=True" in caught.value.fix
    assert path.read_bytes() == b"keep me"
    write_road_video(path, frames=2, size=(64, 64), overwrite=True)
    assert path.stat().st_size > len(b"keep me")


def test_video_frames_are_temporally_coherent():
    frames = [s for s in road_video(41, size=(128, 160), seed=2)]
    assert len(frames) == 41 and frames[0].image.shape == (128, 160, 3) and frames[0].label.shape == (128, 160)
    images = [f.image.astype(np.int16) for f in frames]
    near = np.mean([np.abs(images[k + 1] - images[k]).mean() for k in range(0, 21, 2)])
    far = np.mean([np.abs(images[k + 20] - images[k]).mean() for k in range(0, 21, 2)])
    assert near < 0.7 * far
    labels_near = np.mean([(frames[k + 1].label != frames[k].label).mean() for k in range(0, 21, 2)])
    labels_far = np.mean([(frames[k + 20].label != frames[k].label).mean() for k in range(0, 21, 2)])
    assert labels_near < labels_far
    again = [s for s in road_video(41, size=(128, 160), seed=2)]
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label) for a, b in zip(again, frames))
