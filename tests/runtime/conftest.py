"""Fixtures of the streaming tests: a small random-weights engine and a short synthetic drive, made once."""

from __future__ import annotations

import cv2
import pytest
from streamkit import ENGINE_SIZE, FRAME_SIZE

from edgeseg.data.synthetic import road_video, write_road_video


@pytest.fixture(scope="session")
def engine_dir(tmp_path_factory):
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine

    out = tmp_path_factory.mktemp("engines") / "fastscnn-rw"
    build_engine(BuildRequest(Source(model="fastscnn", random_weights=True), backend="onnxruntime",
                              graph=Graph(input_size=ENGINE_SIZE), destination=Destination(out=str(out))))
    return out


@pytest.fixture(scope="session")
def video(tmp_path_factory):
    """30 frames of a synthetic drive at 72x128."""
    return write_road_video(tmp_path_factory.mktemp("video") / "road.mp4", frames=30, size=FRAME_SIZE, fps=30)


@pytest.fixture(scope="session")
def long_video(tmp_path_factory):
    """3,000 frames (10 distinct ones repeated) at 64x64, written fast: long enough to be interrupted."""
    path = tmp_path_factory.mktemp("video") / "long.mp4"
    frames = [s.image for s in road_video(10, (64, 64), seed=1)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 64))
    for i in range(3000):
        writer.write(frames[i % 10])
    writer.release()
    return path
