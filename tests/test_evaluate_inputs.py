"""The evaluation loop's inputs: a limit checked where it is read, and labels scored with the ignore
index of the dataset they belong to, whatever the model (or engine) recorded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgeseg.data.base import DatasetInfo
from edgeseg.errors import BadInputError
from edgeseg.measure.evaluate import EvalSample, as_predictor, evaluate

VOID = 11
INFO = DatasetInfo("camvid-like", tuple(f"c{i}" for i in range(11)), tuple((i, i, i) for i in range(11)), VOID)


@dataclass
class Labelled:
    """A dataset as the loop sees one: samples, and the `info` their labels belong to."""

    samples: list[EvalSample]
    info: DatasetInfo = INFO

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> EvalSample:
        return self.samples[index]


def _data(n: int = 3) -> Labelled:
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        label = rng.integers(0, 11, (6, 8)).astype(np.uint8)
        label[0] = VOID  # CamVid's void pixels
        samples.append(EvalSample(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), label, str(i)))
    return Labelled(samples)


def _zeros(frames: np.ndarray) -> np.ndarray:
    return np.zeros(frames.shape[:3], np.uint8)


def test_labels_are_scored_with_the_datasets_ignore_index_not_the_models():
    data = _data()
    # a random-weights engine records 255; CamVid's void (11) must still be ignored, not scored as a class
    result = evaluate(as_predictor(_zeros), data, INFO.classes, ignore_index=255)
    assert result.metrics.pixels == sum(int((s.label != VOID).sum()) for s in data.samples)
    same = evaluate(as_predictor(_zeros), data, INFO.classes, ignore_index=VOID)
    assert same.metrics == result.metrics


def test_plain_samples_keep_the_ignore_index_given():
    samples = _data().samples  # a list: no info, so the caller's ignore index is the one there is
    result = evaluate(as_predictor(_zeros), samples, INFO.classes, ignore_index=VOID)
    assert result.metrics.pixels == sum(int((s.label != VOID).sum()) for s in samples)


@pytest.mark.parametrize("limit", [-1, -5])
def test_a_negative_limit_is_refused_not_an_empty_run(limit):
    with pytest.raises(BadInputError, match=f"0 or more, got {limit}"):
        evaluate(as_predictor(_zeros), _data(), INFO.classes, VOID, limit=limit)


def test_limits_of_zero_and_none_still_mean_every_sample():
    data = _data(4)
    seen = []
    evaluate(as_predictor(_zeros), data, INFO.classes, VOID, limit=0, on_prediction=lambda s, _: seen.append(s.name))
    evaluate(as_predictor(_zeros), data, INFO.classes, VOID, limit=None, on_prediction=lambda s, _: seen.append(s.name))
    assert len(seen) == 8


def test_eval_of_a_random_weights_engine_on_camvid(camvid_root, tmp_path, capsys):
    """The CLI path that failed: the engine records ignore index 255, CamVid's labels use 11."""
    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine
    from edgeseg.cli.main import main
    from edgeseg.manifest import read_manifest

    out = tmp_path / "random-ort"
    build_engine(BuildRequest(Source(model="fastscnn", random_weights=True), backend="onnxruntime",
                              graph=Graph(input_size=(48, 64), exporter="torchscript"),
                              destination=Destination(out=str(out))))
    assert read_manifest(out).ignore_index == 255
    assert main(["eval", "--engine", str(out), "--data", f"camvid:{camvid_root}:val", "--no-progress"]) == 0
    assert "mIoU" in capsys.readouterr().out
