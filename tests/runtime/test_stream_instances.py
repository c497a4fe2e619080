"""`edgeseg stream` on instance engines (Mask R-CNN): detect at the frame's size, the score threshold,
the instance views, the sinks (video, PNG folder, callback) and the per-stream object counts.

A real random-weights instance engine (small: 96x128, 8 detections) runs the stream end to end; its
detections all score about 0.25, so those tests lower the threshold. Where the pixels are checked, a
stand-in engine returns hand-made objects, so the test knows where they are drawn."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from streamkit import FRAME_SIZE, QUIET, frames_in

from edgeseg.cli.main import main
from edgeseg.errors import BadInputError
from edgeseg.measure.report_stream import read_stream
from edgeseg.runtime import load
from edgeseg.runtime.instance_render import InstanceRenderer
from edgeseg.runtime.instances import Instances
from edgeseg.runtime.pipeline import Pipeline, PipelineConfig
from edgeseg.runtime.sinks import CallbackSink, PngFolder, VideoSink
from edgeseg.runtime.sources import VideoFile

LOW = 0.2  # below every random-weights detection's score (about 0.25)
PLAIN = dict(hud=False, legend=False, **QUIET)  # nothing drawn but the objects


@pytest.fixture(scope="module")
def instance_engine(tmp_path_factory):
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine

    out = tmp_path_factory.mktemp("engines") / "maskrcnn-rw"
    options = {"backbone": "mobilenetv3_large", "min_size": 96, "max_size": 128, "rpn_pre_nms_top_n_test": 100,
               "rpn_post_nms_top_n_test": 50, "detections_per_img": 8}  # few detections: a quick mask head
    build_engine(BuildRequest(Source(model="maskrcnn", random_weights=True, num_classes=4, model_options=options),
                              precision="fp32", backend="onnxruntime", graph=Graph(input_size=(96, 128)),
                              destination=Destination(out=str(out))))
    return out


class HandMade:
    """An instance engine stand-in: in every frame a car (score 0.9) in the left half and a pedestrian
    (score 0.3) in the right half, pasted at the size asked for."""

    detects_instances = True

    def __init__(self, session) -> None:
        self.manifest, self._session, self.sizes = session.manifest, session, []

    def detect(self, frames: np.ndarray, size=None) -> list[Instances]:
        h, w = size or frames.shape[1:3]
        self.sizes.append((h, w))
        masks = np.zeros((2, h, w), bool)
        masks[0, h // 4:3 * h // 4, w // 8:w // 2 - 4] = True
        masks[1, h // 4:3 * h // 4, w // 2 + 8:7 * w // 8] = True
        boxes = np.array([[w // 8, h // 4, w // 2 - 4, 3 * h // 4], [w // 2 + 8, h // 4, 7 * w // 8, 3 * h // 4]],
                         np.float32)
        return [Instances(boxes, np.array([1, 2]), np.array([0.9, 0.3], np.float32), masks)]

    def infer(self, frames: np.ndarray) -> list[Instances]:
        return self.detect(frames)

    def describe(self) -> dict:
        return self._session.describe()


def decoded(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    return frames


@pytest.mark.slow
def test_an_instance_stream_writes_a_playable_video_of_the_pictures(instance_engine, video, tmp_path):
    results, out = [], tmp_path / "out.mp4"
    with load(instance_engine) as session:
        assert session.detects_instances
        sinks = [VideoSink(out), CallbackSink(results.append)]
        stats = Pipeline(VideoFile(video), session, sinks, PipelineConfig(score_threshold=LOW, max_frames=5,
                                                                          **PLAIN)).run()
    assert stats.frames["processed"] == 5 == len(results) and stats.error is None
    assert frames_in(out) == 5  # finalized and playable, one frame per processed frame
    for r in results:
        assert r.labels is None and r.instances.masks.shape[1:] == FRAME_SIZE  # pasted at the frame's size
        assert (r.instances.scores >= LOW).all() and r.picture.shape == (*FRAME_SIZE, 3)
    drawn = [r for r in results if r.instances.masks.any()]
    assert drawn, "the random-weights engine found no object with a mask"
    r = drawn[0]
    inside = r.instances.masks.any(axis=0)
    changed = (r.picture != r.frame).any(axis=2)
    assert changed[inside].mean() > 0.5  # the masks are blended into the frame
    video_frames = decoded(out)
    assert np.abs(video_frames[r.index].astype(int) - r.picture).mean() < 8  # the video holds the pictures (mp4v)
    shown = [len(r.instances) for r in results]
    assert stats.instances == {"score_threshold": LOW, "frames": 5, "shown": sum(shown),
                               "mean_per_frame": sum(shown) / 5, "max_per_frame": max(shown),
                               "by_class": stats.instances["by_class"]}
    assert sum(stats.instances["by_class"].values()) == sum(shown)
    assert set(stats.instances["by_class"]) <= {"car", "pedestrian", "bicyclist"}
    stats.write(tmp_path / "stats.json")
    data = read_stream(tmp_path / "stats.json")  # `edgeseg report --stream` still reads it
    assert data["settings"]["score_threshold"] == LOW and data["instances"]["frames"] == 5
    assert "objects with score >= 0.20" in stats.summary()


@pytest.mark.slow
def test_the_threshold_decides_what_is_drawn(instance_engine, video):
    results = []
    with load(instance_engine) as session:
        stats = Pipeline(VideoFile(video), session, [CallbackSink(results.append)],
                         PipelineConfig(score_threshold=1.0, max_frames=2, **PLAIN)).run()
        assert all(len(r.instances) == 0 and np.array_equal(r.picture, r.frame) for r in results)
        assert stats.instances["shown"] == 0 and stats.instances["mean_per_frame"] == 0
        made, kept = HandMade(session), []
        Pipeline(VideoFile(video), made, [CallbackSink(kept.append)], PipelineConfig(max_frames=2, **QUIET)).run()
    assert made.sizes == [FRAME_SIZE, FRAME_SIZE]  # detect was asked for the frame's size, not the input's
    assert [list(r.instances.labels) for r in kept] == [[1], [1]]  # default 0.5: the car, not the pedestrian


@pytest.mark.slow
def test_hand_made_objects_change_the_video_where_they_are_drawn(instance_engine, video, tmp_path):
    out = tmp_path / "out.mp4"
    with load(instance_engine) as session:
        made = HandMade(session)
        Pipeline(VideoFile(video), made, [VideoSink(out)], PipelineConfig(max_frames=4, **PLAIN)).run()
    written, source = decoded(out), decoded(video)[:4]
    assert len(written) == 4
    h, w = FRAME_SIZE
    car = (slice(h // 4 + 3, 3 * h // 4 - 3), slice(w // 8 + 3, w // 2 - 7))  # inside the car, off its contour
    far = (slice(3 * h // 4 + 8, None), slice(None))  # below every object (labels are drawn above them)
    for got, was in zip(written, source):
        diff = np.abs(got.astype(int) - was.astype(int)).mean(axis=2)
        assert diff[car].mean() > 20 and diff[far].mean() < 6  # drawn there, codec noise elsewhere


@pytest.mark.slow
def test_instance_views_legend_and_hud(instance_engine):
    with load(instance_engine) as session:
        m = session.manifest
        found = HandMade(session).detect(np.zeros((1, 96, 128, 3), np.uint8), FRAME_SIZE)[0]
    frame = np.full((*FRAME_SIZE, 3), 90, np.uint8)
    h, w = FRAME_SIZE
    plain = InstanceRenderer(m.palette, m.classes, "overlay", show_legend=False).render(frame, found)
    assert plain.shape == frame.shape and (plain[h // 2, w // 4] != 90).any() and (plain[2, 2] == 90).all()
    mask = InstanceRenderer(m.palette, m.classes, "mask", show_legend=False).render(frame, found)
    assert (mask[2, 2] == 0).all() and (mask[h // 2, w // 4] > 0).any()  # the objects on black
    side = InstanceRenderer(m.palette, m.classes, "side", show_legend=False).render(frame, found)
    assert side.shape == (h, 2 * w, 3) and np.array_equal(side[:, :w], frame)  # frame | overlay
    assert np.array_equal(side[:, w:], plain)
    legend = InstanceRenderer(m.palette, m.classes, "overlay").render(frame, found)
    assert not np.array_equal(legend[:, -40:], plain[:, -40:])  # the class legend, top right
    hud = InstanceRenderer(m.palette, m.classes, "overlay", show_legend=False).render(frame, found, ["9.9 FPS"])
    assert not np.array_equal(hud[:50, :60], plain[:50, :60])
    with pytest.raises(BadInputError, match="frame size"):
        InstanceRenderer(m.palette, m.classes).render(np.zeros((10, 10, 3), np.uint8), found)


@pytest.mark.slow
def test_a_png_folder_holds_the_rendered_pictures(instance_engine, video, tmp_path):
    """As for a semantic engine, the PNG folder holds what the stream shows: the frame | overlay here."""
    results, folder = [], tmp_path / "pngs"
    with load(instance_engine) as session:
        sinks = [PngFolder(folder), CallbackSink(results.append)]
        stats = Pipeline(VideoFile(video), HandMade(session), sinks,
                         PipelineConfig(view="side", max_frames=3, **PLAIN)).run()
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:06d}.png" for i in range(3)]
    assert stats.outputs == [{"kind": "png", "path": str(folder), "frames": 3, "removed_earlier": 0, "written": True}]
    for r in results:
        png = cv2.imread(str(folder / f"frame_{r.index:06d}.png"))
        assert np.array_equal(png, r.picture)  # lossless
        assert np.array_equal(png[:, :FRAME_SIZE[1]], r.frame) and not np.array_equal(png[:, FRAME_SIZE[1]:], r.frame)


@pytest.mark.slow
def test_the_cli_streams_an_instance_engine_without_torch(instance_engine, video, tmp_path):
    out, stats_file = tmp_path / "out.mp4", tmp_path / "stats.json"
    code = textwrap.dedent(f"""
        import sys
        from edgeseg.cli import main
        rc = main(["stream", "--engine", {str(instance_engine)!r}, "--video", {str(video)!r}, "--output",
                   {str(out)!r}, "--max-frames", "3", "--score-threshold", "{LOW}", "--stats", {str(stats_file)!r},
                   "--engine-fps", "2", "--report-every", "0"])
        assert rc == 0, rc
        assert "torch" not in sys.modules, "torch imported"
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "objects scoring >= 0.2" in done.stdout and "objects with score >= 0.20" in done.stdout
    assert frames_in(out) == 3
    data = json.loads(stats_file.read_text())
    assert data["frames"]["processed"] == 3 and data["instances"]["frames"] == 3
    assert data["engine_only"]["iterations"] == 4 and read_stream(stats_file)["settings"]["score_threshold"] == LOW


def test_score_threshold_is_refused_on_a_semantic_engine_and_outside_0_to_1(engine_dir, video, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["stream", "--engine", str(engine_dir), "--video", str(video), "--output", str(out),
                 "--score-threshold", "0.3"]) == 2
    err = capsys.readouterr().err
    assert "--score-threshold applies to instance engines" in err and "is a semantic engine" in err and "fix:" in err
    assert not out.exists()  # refused before anything was opened
    for bad in ("1.5", "-0.1", "nan"):
        assert main(["stream", "--engine", str(engine_dir), "--video", str(video), "--score-threshold", bad]) == 2
        assert "--score-threshold" in capsys.readouterr().err
    for bad in (1.5, -0.1, float("nan"), True, "0.5"):
        with pytest.raises(BadInputError, match="score threshold"):
            PipelineConfig(score_threshold=bad)
    with load(engine_dir) as session:
        with pytest.raises(BadInputError, match="applies to instance engines"):
            Pipeline(VideoFile(video), session, [], PipelineConfig(score_threshold=0.5))
        results = []  # a semantic stream is as it was: labels, no instances, no counts
        stats = Pipeline(VideoFile(video), session, [CallbackSink(results.append)],
                         PipelineConfig(max_frames=2, **QUIET)).run()
    assert results[0].instances is None and results[0].labels is not None
    assert stats.instances is None and stats.settings["score_threshold"] is None
