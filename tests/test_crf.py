"""The dense CRF: pydensecrf's permutohedral lattice against the exact all-pairs mean field, what it does to
labels, and `edgeseg eval --crf` end to end on a small CamVid-format split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeseg.measure.crf import CrfEvaluation, CrfParams, dense_crf, exact_dense_crf, softmax

pytest.importorskip("pydensecrf.densecrf", reason="the dense CRF needs pydensecrf (pip install 'edgeseg[crf]')")


def _scene(seed=0, size=(40, 60)):
    """Three colour bands with noisy class scores: the network is right on 96% of pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    truth = np.zeros(size, int)
    truth[:, 25:45], truth[:, 45:] = 1, 2
    image = np.array([(200, 50, 50), (40, 180, 60), (30, 30, 220)], np.uint8)[truth]
    image = np.clip(image.astype(int) + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
    probs = np.full((3, h, w), 0.2)
    for c in range(3):
        probs[c][truth == c] = 0.6
    probs += rng.random(probs.shape) * 0.5
    return image, (probs / probs.sum(0)).astype(np.float32), truth


@pytest.mark.parametrize("params", [CrfParams(), CrfParams(w1=6, theta_alpha=20, theta_beta=8, iterations=5)])
def test_the_lattice_computes_the_exact_mean_field(params):
    image, probs, _ = _scene()
    lattice, exact = dense_crf(probs, image, params), exact_dense_crf(probs, image, params)
    assert lattice.shape == exact.shape == probs.shape
    assert np.abs(lattice - exact).max() < 0.05  # the lattice approximates the Gaussian filtering
    assert np.mean(lattice.argmax(0) == exact.argmax(0)) > 0.99
    np.testing.assert_allclose(exact.sum(0), 1, rtol=1e-5)


def test_the_crf_cleans_noisy_labels_along_colour_edges():
    image, probs, truth = _scene(1)
    before = np.mean(probs.argmax(0) == truth)
    after = np.mean(dense_crf(probs, image).argmax(0) == truth)
    assert before < 0.98 and after == 1.0


def test_without_pairwise_weights_the_crf_keeps_the_argmax():
    image, probs, _ = _scene(2)
    q = exact_dense_crf(probs, image, CrfParams(w1=0, w2=0))
    np.testing.assert_array_equal(q.argmax(0), probs.argmax(0))
    with pytest.raises(ValueError, match="too large"):
        exact_dense_crf(np.ones((2, 100, 100), np.float32) / 2, np.zeros((100, 100, 3), np.uint8))


def test_one_network_run_gives_both_predictors():
    image, probs, _ = _scene(3)
    calls = []

    def scores(frames):
        calls.append(len(frames))
        return probs[None].repeat(len(frames), 0)

    pair = CrfEvaluation(scores, None)
    frames = image[None]
    refined, plain = pair.refined(frames), pair.plain(frames)
    assert calls == [1] and refined.shape == plain.shape == (1, 40, 60)
    np.testing.assert_array_equal(plain[0], probs.argmax(0))
    assert pair.timing()["frames"] == 1 and pair.timing()["crf_ms_per_frame"] > 0
    with pytest.raises(RuntimeError):
        pair.plain(frames[:, ::-1])  # other frames than the refined predictor saw


@pytest.fixture(scope="module")
def crf_engine(tmp_path_factory):
    from fakedata import untrained_checkpoint

    from edgeseg.build.orchestrator import BuildRequest, Destination, Source, build_engine

    tmp = tmp_path_factory.mktemp("crf")
    ckpt = untrained_checkpoint(tmp / "f.pt", "fastscnn", (48, 64))
    build_engine(BuildRequest(Source(checkpoint=str(ckpt)), backend="onnxruntime", destination=Destination(out=str(tmp / "e"))))
    return tmp / "e"


def test_eval_crf_on_an_engine(crf_engine, tmp_path, camvid_root):
    from edgeseg.cli import main

    engine = crf_engine
    out = tmp_path / "crf.json"
    assert main(["eval", "--engine", str(engine), "--data", f"camvid:{camvid_root}:val", "--crf", "--crf-iterations",
                 "3", "--json", str(out), "--no-progress"]) == 0
    crf = json.loads(out.read_text())["crf"]
    assert crf["params"]["iterations"] == 3 and crf["frames"] == 4 and crf["crf_ms_per_frame"] > 0
    assert crf["gain_points"] == pytest.approx(100 * (crf["miou_with"] - crf["miou_without"]), abs=1e-3)
    assert set(crf["per_class_gain_points"]) >= {"pole", "sign", "pedestrian", "bicyclist"}
    assert main(["eval", "--engine", str(engine), "--data", f"camvid:{camvid_root}:val", "--crf", "--tta"]) == 2
    data = json.loads(out.read_text())
    assert data["miou"] == crf["miou_without"]  # the network's own mIoU on top, the CRF's in its section
    bench = tmp_path / "bench.json"  # edgeseg report shows the CRF's mIoU and cost beside the engine's
    assert main(["bench", str(engine), "--data", f"camvid:{camvid_root}:val", "--iterations", "5", "--warmup", "1",
                 "--json", str(bench), "--no-progress"]) == 0
    assert main(["report", str(bench), "--eval", str(out), "--markdown", str(tmp_path / "r.md")]) == 0
    assert f"dense CRF {100 * crf['miou_with']:.2f}" in (tmp_path / "r.md").read_text()


def test_softmax_is_a_distribution():
    p = softmax(np.array([[[[1.0]], [[3.0]]]]), axis=1)
    np.testing.assert_allclose(p.sum(1), 1)
    assert p[0, 1, 0, 0] > p[0, 0, 0, 0]


def test_an_engine_without_scores_is_refused(tmp_path):
    from fakedata import untrained_checkpoint

    from edgeseg.build.orchestrator import BuildRequest, Destination, Graph, Source, build_engine
    from edgeseg.errors import BadInputError
    from edgeseg.measure.crf_eval import engine_scores
    from edgeseg.runtime import load

    ckpt = untrained_checkpoint(tmp_path / "f.pt", "fastscnn", (48, 64))
    build_engine(BuildRequest(Source(checkpoint=str(ckpt)), backend="onnxruntime", graph=Graph(tail="engine"),
                              destination=Destination(out=str(tmp_path / "e"))))
    with load(tmp_path / "e") as session, pytest.raises(BadInputError, match="--tail host"):
        engine_scores(session)


@pytest.mark.slow  # two ConvCRF builds and a stream (~40 s)
def test_convcrf_engine_builds_runs_and_streams(tmp_path):
    """`edgeseg build --crf conv` on ONNX Runtime and OpenVINO: the CRF is in the graph and gives the PyTorch
    module's labels, the manifest says so, and `edgeseg stream` runs the engine unchanged."""
    from fakedata import untrained_checkpoint

    from edgeseg import backends
    from edgeseg.cli import main
    from edgeseg.data.synthetic import write_road_video
    from edgeseg.manifest import read_manifest
    from edgeseg.models.convcrf import ConvCrfParams, CrfNet
    from edgeseg.runtime import load
    from edgeseg.train.checkpoint import build_from_checkpoint
    from edgeseg.train.predictor import TorchPredictor

    ckpt = untrained_checkpoint(tmp_path / "f.pt", "fastscnn", (64, 96))
    for backend in [b for b in ("onnxruntime", "openvino") if backends.availability(b).ok]:
        out = tmp_path / backend
        assert main(["build", "--checkpoint", str(ckpt), "--backend", backend, "--crf", "conv", "--crf-window", "5",
                     "--crf-downsample", "4", "--crf-iterations", "3", "--out", str(out)]) == 0
        m = read_manifest(out)
        assert m.extra["crf"] == {"kind": "conv", "window": 5, "downsample": 4, "iterations": 3, "w1": 4.0,
                                  "theta_alpha": 121.0, "theta_beta": 5.0, "w2": 3.0, "theta_gamma": 3.0}
        assert m.output.kind == "lowres-logits" and tuple(m.output.shape) == (1, 11, 16, 24)  # the CRF's 1/4
        with load(out) as session:  # the engine against CrfNet in PyTorch on the same frames
            frames = np.random.default_rng(0).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
            engine_labels = session.infer(frames)
        model, payload = build_from_checkpoint(ckpt)
        info = payload["metadata"]["dataset"]
        crfnet = CrfNet(model, info["mean"], info["std"], ConvCrfParams(window=5, downsample=4, iterations=3))
        torch_labels = TorchPredictor(crfnet, info["mean"], info["std"])(frames)
        assert np.mean(engine_labels == torch_labels) > 0.999
    video = tmp_path / "road.mp4"
    write_road_video(video, frames=8, size=(64, 96))
    assert main(["stream", "--engine", str(tmp_path / "onnxruntime"), "--video", str(video), "--max-frames", "8",
                 "--output", str(tmp_path / "seg.mp4")]) == 0
    assert main(["build", "--checkpoint", str(ckpt), "--backend", "onnxruntime", "--crf", "conv", "--crf-window", "4",
                 "--out", str(tmp_path / "bad")]) == 2


def test_a_crf_engine_gets_its_own_default_directory():
    from pathlib import Path

    from edgeseg.build.request import Destination

    assert Destination().directory("fastscnn", "fp32", "onnxruntime", "crf") == Path("engines/fastscnn-fp32-onnxruntime-crf")
    assert Destination(out="x").directory("fastscnn", "fp32", "onnxruntime", "crf") == Path("x")


def test_crf_search_picks_the_best_of_the_grid_on_a_held_out_split(crf_engine, tmp_path, camvid_root):
    from edgeseg.cli import main
    from edgeseg.measure.crf_eval import SEARCH_GRID

    out = tmp_path / "crf.json"
    data = f"camvid:{camvid_root}:val"
    assert main(["eval", "--engine", str(crf_engine), "--data", data, "--crf", "--crf-search", f"camvid:{camvid_root}:train",
                 "--crf-search-size", "2", "--crf-iterations", "2", "--json", str(out), "--no-progress"]) == 0
    crf = json.loads(out.read_text())["crf"]
    grid = crf["search"]["grid"]
    assert len(grid) == np.prod([len(v) for v in SEARCH_GRID.values()])
    best = max(grid, key=lambda r: r["miou"])
    assert {k: crf["params"][k] for k in SEARCH_GRID} == {k: best[k] for k in SEARCH_GRID}
    assert crf["params"]["iterations"] == 2  # what the search does not cover is kept
    assert main(["eval", "--engine", str(crf_engine), "--data", data, "--crf", "--crf-search", data]) == 2
    # the same split spelt differently is the same images: refused by what it holds, not by its spelling
    assert main(["eval", "--engine", str(crf_engine), "--data", data, "--crf", "--crf-search",
                 f"camvid:{camvid_root}/:val"]) == 2
    assert main(["eval", "--engine", str(crf_engine), "--data", data, "--crf", "--crf-search", data,
                 "--crf-search-size", "0"]) == 2


def test_int8_convcrf_is_refused_where_the_quantizer_would_quantize_it():
    from edgeseg.build.request import Graph
    from edgeseg.errors import BadInputError
    from edgeseg.models.convcrf import ConvCrfParams

    graph = Graph(crf=ConvCrfParams())
    graph.check_crf("int8", "onnxruntime", foreign=False)
    graph.check_crf("fp32", "openvino", foreign=False)
    with pytest.raises(BadInputError, match="onnxruntime only"):
        graph.check_crf("int8", "openvino", foreign=False)
    with pytest.raises(BadInputError, match="foreign ONNX"):
        graph.check_crf("fp32", "onnxruntime", foreign=True)
