"""Several sources into one engine without a network: batching across sources (fixed and dynamic batch),
per-source accounting, outputs and names, the mailboxes' fairness, and the CLI's source flags."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np
import pytest
from streamkit import ENGINE_SIZE, QUIET, frames_in

from edgeseg.cli import main
from edgeseg.errors import BadInputError
from edgeseg.runtime import load
from edgeseg.runtime.feeds import END, Mailboxes, output_for
from edgeseg.runtime.pipeline import Feed, Pipeline, PipelineConfig
from edgeseg.runtime.sinks import CallbackSink, VideoSink, grid
from edgeseg.runtime.sources import VideoFile


def _build(out, **graph):
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine

    build_engine(BuildRequest(Source(model="fastscnn", random_weights=True), backend="onnxruntime",
                              graph=Graph(input_size=ENGINE_SIZE, **graph), destination=Destination(out=str(out))))
    return out


@pytest.fixture(scope="module")
def batch3_engine(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("engines") / "fastscnn-b3", batch=3)


@pytest.fixture(scope="module")
def dynamic_engine(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("engines") / "fastscnn-dyn", dynamic=True)


class CountingSession:
    """The real session, with the batch of every call recorded (what the engine was actually sent)."""

    def __init__(self, session) -> None:
        self._session, self.manifest, self.batches = session, session.manifest, []

    def infer(self, frames):
        self.batches.append(len(frames))
        return self._session.infer(frames)

    def describe(self):
        return self._session.describe()


def _labels_alone(engine, video, n):
    """Each frame through the engine by itself: what a batched stream must reproduce exactly."""
    with load(engine) as session, VideoFile(video) as source:
        frames = [source.read() for _ in range(n)]
        from edgeseg.runtime.frames import resize_to_input

        batch, size = session.manifest.input.shape[0] or 1, session.manifest.input.size  # (None, None): dynamic
        return [session.infer(np.stack([resize_to_input(f, size)] * batch))[0] for f in frames]


@pytest.mark.parametrize("which", ["fixed batch 3", "dynamic"])
def test_three_videos_are_batched_through_one_engine_with_the_same_labels(which, batch3_engine, dynamic_engine,
                                                                          video, tmp_path):
    engine = batch3_engine if which == "fixed batch 3" else dynamic_engine
    expected = _labels_alone(engine, video, 30)
    got: dict[str, list] = {"a": [], "b": [], "c": []}
    feeds = [Feed(VideoFile(video), [VideoSink(tmp_path / f"{n}.mp4"),
                                     CallbackSink(lambda r, n=n: got[n].append((r.index, r.labels)))], n)
             for n in ("a", "b", "c")]
    with load(engine) as real:
        session = CountingSession(real)
        stats = Pipeline(feeds, session, config=PipelineConfig(**QUIET)).run()
    assert max(session.batches) == 3 and sum(session.batches) >= 90  # batches of 3 were sent
    assert stats.engine["batch"] == 3
    for name, results in got.items():
        assert [i for i, _ in results] == list(range(30))  # every frame, in order, per source
        assert all(np.array_equal(lab, exp) for (_, lab), exp in zip(results, expected))
        source = next(s for s in stats.sources if s["name"] == name)
        assert source["frames"]["processed"] == 30 and source["frames"]["dropped"] == 0
        assert frames_in(tmp_path / f"{name}.mp4") == 30
    assert stats.frames["processed"] == 90 and stats.frames["captured"] == 90


def test_a_fixed_batch_is_padded_when_fewer_frames_are_ready(batch3_engine, video):
    """One source into a batch-3 engine: each call carries 3 frames, one of them real."""
    seen = []
    with load(batch3_engine) as real:
        session = CountingSession(real)
        stats = Pipeline(VideoFile(video), session, [CallbackSink(lambda r: seen.append(r.index))],
                         PipelineConfig(max_frames=12, **QUIET)).run()
    assert set(session.batches) == {3} and seen == list(range(12)) and stats.frames["processed"] == 12


def test_batch_settings_that_cannot_apply_are_refused(batch3_engine, engine_dir, video):
    with load(batch3_engine) as session:
        with pytest.raises(BadInputError, match="built for batches of 3"):
            Pipeline(VideoFile(video), session, config=PipelineConfig(batch=2, **QUIET))
    with pytest.raises(BadInputError):
        PipelineConfig(batch=0)
    with load(engine_dir) as session:
        with pytest.raises(BadInputError, match="two sources are named 'x'"):
            Pipeline([Feed(VideoFile(video), [], "x"), Feed(VideoFile(video), [], "x")], session)
        with pytest.raises(BadInputError, match="not a plain name"):
            Pipeline([Feed(VideoFile(video), [], "front/left")], session)
        with pytest.raises(BadInputError, match="give each Feed its own sinks"):
            Pipeline([Feed(VideoFile(video))], session, [VideoSink("/tmp/never.mp4")])


def test_mailboxes_serve_every_feed_in_turn_and_end_after_the_last_frame():
    drops = []
    boxes = Mailboxes([False, False, True], capacity=2, max_batch=2, on_drop=drops.append)
    for i in range(2):
        boxes.put(0, ("a", i))
        boxes.put(1, ("b", i))
    boxes.put(2, ("c", 0))
    boxes.put(2, ("c", 1))  # a live feed keeps the newest frame only
    assert drops == [2]
    taken = [boxes.get() for _ in range(3)]
    assert taken == [[("a", 0), ("b", 0)], [("c", 1), ("a", 1)], [("b", 1)]]  # round-robin, no feed starves
    for feed in range(3):
        boxes.close(feed)
    assert boxes.get() is END


def test_a_full_file_mailbox_waits_instead_of_dropping():
    boxes = Mailboxes([False], capacity=1, max_batch=1, on_drop=lambda i: pytest.fail("a file frame was dropped"))
    boxes.put(0, 1)
    second = threading.Thread(target=boxes.put, args=(0, 2))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for room
    assert boxes.get() == [1]
    second.join(5)
    assert boxes.get() == [2]


def test_outputs_per_source_and_the_grid():
    assert output_for("out.mp4", "front", several=False).name == "out.mp4"
    assert output_for("out.mp4", "front", several=True).name == "out-front.mp4"
    assert str(output_for("runs/{source}.mp4", "rear", several=True)) == "runs/rear.mp4"
    assert str(output_for("frames", "rear", several=True)) == "frames/rear"
    a, b, c = (np.full((4, 6, 3), v, np.uint8) for v in (10, 20, 30))
    tiled = grid([a, b, c])
    assert tiled.shape == (8, 12, 3) and tiled[0, 0, 0] == 10 and tiled[0, 6, 0] == 20 and tiled[4, 0, 0] == 30
    assert tiled[4, 6:].max() == 0  # the empty tile stays black


def test_the_cli_takes_named_sources_and_writes_one_output_each(engine_dir, video, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "frame.png"), np.zeros((8, 8, 3), np.uint8))
    argv = ["stream", "--engine", str(engine_dir), "--video", f"left={video}", "--images", f"right={images}",
            "--video", str(video), "--output", str(tmp_path / "out.mp4"), "--stats", str(tmp_path / "s.json"),
            "--report-every", "0", "--engine-fps", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    stats = json.loads((tmp_path / "s.json").read_text())
    assert [s["name"] for s in stats["sources"]] == ["left", "right", "video1"]  # unnamed: kind + its place among that kind
    assert stats["source"]["kind"] == "several"
    assert frames_in(tmp_path / "out-left.mp4") == 30 and frames_in(tmp_path / "out-video1.mp4") == 30
    assert stats["frames"]["processed"] == 61  # 30 + the one image + 30
    assert "left (video): 30 frames" in capsys.readouterr().out
    from edgeseg.measure.report_stream import markdown_streams, read_stream

    assert "| several left,right,video1 |" in markdown_streams([read_stream(tmp_path / "s.json")])  # edgeseg report


@pytest.mark.parametrize("argv, words", [
    (["--video", "a={v}", "--video", "a={v}"], "two sources are named 'a'"),
    (["--video", "{v}", "--images", "x=/nonexistent"], "image folder /nonexistent does not exist"),
    (["--camera", "front=x"], "--camera 'x' is out of range"),
    (["--video", "{v}", "--loop", "--give-up", "3"], "--give-up applies to live sources"),
    (["--rtsp", "cam="], "--rtsp is empty"),
    ([], "no source was given"),
])
def test_the_cli_refuses_bad_source_lists_by_name(argv, words, video, tmp_path, capsys):
    argv = [a.format(v=video, o=tmp_path) for a in argv]
    assert main(["stream", "--engine", str(tmp_path / "never"), *argv]) == 2
    assert words in capsys.readouterr().err


def test_two_sources_cannot_write_the_same_file(engine_dir, video, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to(tmp_path / "a")  # b/x.mp4 is a/x.mp4
    argv = ["stream", "--engine", str(engine_dir), "--video", f"a={video}", "--video", f"b={video}",
            "--output", str(tmp_path / "{source}" / "x.mp4")]
    assert main(argv) == 2 and "two sources would write to" in capsys.readouterr().err
    assert not (tmp_path / "a" / "x.mp4").exists()


def test_engine_workers_run_calls_at_once_and_keep_each_source_in_order(engine_dir, video):
    """Three ONNX Runtime calls at once, one per source: every frame's labels as alone, each source in order."""
    expected = _labels_alone(engine_dir, video, 30)
    got: dict[str, list] = {"a": [], "b": [], "c": []}
    feeds = [Feed(VideoFile(video), [CallbackSink(lambda r, n=n: got[n].append((r.index, r.labels)))], n)
             for n in ("a", "b", "c")]
    with load(engine_dir) as session:
        pipeline = Pipeline(feeds, session, config=PipelineConfig(engine_workers=3, **QUIET))
        stats = pipeline.run()
    assert pipeline.workers == 3 and stats.engine["workers"] == 3
    for results in got.values():
        assert [i for i, _ in results] == list(range(30))
        assert all(np.array_equal(lab, exp) for (_, lab), exp in zip(results, expected))
    assert stats.frames["processed"] == 90 and stats.stages["infer"].count == 90


def test_engine_workers_are_refused_where_a_session_runs_one_call_at_a_time(engine_dir, video):
    with load(engine_dir) as real:
        one_at_a_time = CountingSession(real)  # a session without concurrent_calls
        with pytest.raises(BadInputError, match="one engine call at a time"):
            Pipeline([Feed(VideoFile(video)), Feed(VideoFile(video))], one_at_a_time,
                     config=PipelineConfig(engine_workers=2))
        assert Pipeline([Feed(VideoFile(video))], real, config=PipelineConfig(engine_workers=4)).workers == 1
        two = [Feed(VideoFile(video)), Feed(VideoFile(video))]
        assert Pipeline(two, real).workers == 2  # the default for a batch-1 ONNX Runtime engine: one per source
        assert Pipeline(two, one_at_a_time).workers == 1  # and one call at a time elsewhere
