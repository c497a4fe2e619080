"""The report shows the segmentation: `edgeseg eval --engine ... --json F` draws a strip of frames (image |
ground truth | reference | engine | disagreement) beside F and names it there; `edgeseg report` embeds it
and tabulates each class's IoU against the reference with its drop, marking the classes the engine hurts."""

from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pytest
from bench_helpers import make_result, noisy_rounds, write_run
from fakedata import write_camvid

from edgeseg.cli.main import main
from edgeseg.data.synthetic import SYNTHETIC_INFO
from edgeseg.errors import EdgesegError
from edgeseg.measure import strip
from edgeseg.measure.evaluate import EvalSample, as_predictor, evaluate
from edgeseg.measure.gate import read_eval
from edgeseg.measure.report import collect, html, markdown

CLASSES, PALETTE, IGNORE = SYNTHETIC_INFO.classes, SYNTHETIC_INFO.palette, SYNTHETIC_INFO.ignore_index


@pytest.mark.slow  # builds the tiny engine (session fixture), loads torch for the checkpoint reference (~15 s)
def test_eval_writes_the_strip_and_the_report_shows_it_with_the_per_class_drops(tmp_path, tiny_engine,
                                                                                   tiny_checkpoint, capsys):
    root = write_camvid(tmp_path / "camvid", splits=("val",), count=5)  # 48x64 frames
    out = tmp_path / "evals" / "eval.json"
    args = ["eval", "--engine", str(tiny_engine), "--reference", str(tiny_checkpoint), "--data", f"camvid:{root}:val",
            "--json", str(out), "--samples", "3", "--no-progress"]
    assert main(args) == 0
    frames = tmp_path / "evals" / "eval.frames.jpg"
    data = json.loads(out.read_text())
    assert data["samples"]["strip"] == "eval.frames.jpg" and f"wrote {frames}" in capsys.readouterr().out
    assert [f["index"] for f in data["samples"]["frames"]] == [0, 2, 4]  # spread over the 5 images
    assert all(0.0 <= f["disagreement"] <= 1.0 for f in data["samples"]["frames"])
    columns = data["samples"]["columns"]  # a checkpoint is named with its folder (runs/x/best.pt: x/best.pt)
    assert columns[:2] == ["image", "ground truth"] and columns[3:] == ["engine: tiny-ort (fp32)", "disagreement"]
    assert columns[2] == f"reference: {tiny_checkpoint.parent.name}/fastscnn.pt"
    image = cv2.imread(str(frames))
    row = round(48 * strip.PANEL_WIDTH / 64)  # each 48x64 frame drawn 320 wide
    assert image.shape[0] == strip.HEADER + 3 * row and image.shape[1] > 5 * strip.PANEL_WIDTH

    # the strip is a result file too: refused before the work without --force, replaced with it
    out.unlink()
    assert main(args) == 2 and "eval.frames.jpg already exists" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--force"]) == 0 and out.exists()

    bench = write_run(tmp_path / "bench.json", [make_result("tiny-ort", noisy_rounds(5.0, 1))])
    page_path, md_path = tmp_path / "report.html", tmp_path / "md" / "report.md"
    assert main(["report", bench, "--eval", f"tiny-ort={out}", "--out", str(page_path),
                 "--markdown", str(md_path)]) == 0
    page, md = page_path.read_text(), md_path.read_text()
    embedded = re.search(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == frames.read_bytes()  # self-contained
    assert "<h2>Segmentation: tiny-ort</h2>" in page
    data = json.loads(out.read_text())
    for name, value in data["per_class_iou"].items():  # each class: reference IoU, engine IoU, drop from the JSON
        ref, drop = data["reference"]["per_class_iou"][name], data["per_class_iou_drop_points"][name]
        cells = [f"{100 * v + 0.0:.2f}" if v is not None else "-" for v in (ref, value)]
        cells.append("-" if drop is None else f"{drop + 0.0:.2f}")
        assert "<td>" + name + "</td>" + "".join(f'<td class="n">{c}</td>' for c in cells) in page
        assert f"| {name} | {' | '.join(cells)} |" in md or f"| **{name}** |" in md
    assert "![image | ground truth" in md and "](../evals/eval.frames.jpg)" in md  # relative to the Markdown file


def _evaluated(engine_wrong: bool = True, labelled: bool = True, reference: bool = True):
    """Three 40x80 frames whose ground truth is road (3) with a pole (2) in columns 60-69 and four unlabelled
    rows on top; the reference is right everywhere, the engine calls the first frame's pole road."""
    samples = []
    truth = np.full((40, 80), 3, np.uint8)
    truth[:, 60:70] = 2
    for i in range(3):
        label = truth.copy()
        label[:4] = IGNORE
        samples.append(EvalSample(np.full((40, 80, 3), 60 + 40 * i, np.uint8), label if labelled else None, f"f{i}"))

    def right(frames):
        return np.repeat(truth[None], len(frames), 0)

    def engine(frames):
        out = right(frames)
        if engine_wrong:
            out[frames[:, 0, 0, 0] == 60, :, 60:70] = 3
        return out

    return evaluate(as_predictor(engine), samples, CLASSES, IGNORE, as_predictor(right) if reference else None,
                    keep=3)


def _panel(drawn: strip.Strip, row: int, column: int) -> np.ndarray:
    top, height = drawn.rows[row]
    return drawn.image[top:top + height, column * strip.PANEL_WIDTH:(column + 1) * strip.PANEL_WIDTH]


def test_the_disagreement_panel_says_who_is_right():
    result = _evaluated()
    assert [f.disagreement for f in result.frames] == [pytest.approx(360 / 2880), 0.0, 0.0]
    drawn = strip.render(result.frames, PALETTE, CLASSES, IGNORE, "int8", "fp32")
    assert drawn.columns == ["image", "ground truth", "reference: fp32", "engine: int8", "disagreement"]
    assert drawn.rows == [(strip.HEADER + 160 * i, 160) for i in range(3)]  # 40x80 drawn 320 wide
    panel = _panel(drawn, 0, 4)
    # the pole the engine missed (columns 60-69 -> 240-279 at 4x): red where the ground truth says the
    # reference is right, yellow on the unlabelled rows on top (rows 0-3 -> 0-15)
    np.testing.assert_array_equal(panel[18:150, 242:278], np.broadcast_to(strip.WORSE, (132, 36, 3)))
    np.testing.assert_array_equal(panel[1:14, 242:278], np.broadcast_to(strip.OTHER, (13, 36, 3)))
    grey = panel[30:150, 100:230]
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()  # elsewhere the grey frame
    for row in (1, 2):  # no difference, nothing painted
        assert not (_panel(drawn, row, 4) == strip.WORSE).all(axis=-1).any()
    # the overlays: the reference paints the pole's colour there, the engine road's
    lut = np.asarray(PALETTE)[:, ::-1]
    ref, ours = _panel(drawn, 0, 2)[80, 260].astype(int), _panel(drawn, 0, 3)[80, 260].astype(int)
    frame = 60
    for pixel, cls in ((ref, 2), (ours, 3)):
        np.testing.assert_allclose(pixel, 0.45 * frame + 0.55 * lut[cls], atol=1.5)


def test_columns_follow_what_the_eval_has():
    unlabelled = strip.render(_evaluated(labelled=False).frames, PALETTE, CLASSES, IGNORE)
    assert unlabelled.columns == ["image", "reference: reference", "engine: engine", "disagreement"]
    np.testing.assert_array_equal(_panel(unlabelled, 0, 3)[18:150, 242:278],
                                  np.broadcast_to(strip.OTHER, (132, 36, 3)))  # nobody to say who is right
    alone = strip.render(_evaluated(reference=False).frames, PALETTE, CLASSES, IGNORE)
    assert alone.columns == ["image", "ground truth", "engine: engine", "errors"]
    np.testing.assert_array_equal(_panel(alone, 0, 3)[18:150, 242:278], np.broadcast_to(strip.WORSE, (132, 36, 3)))
    assert alone.image.shape[1] > 4 * strip.PANEL_WIDTH  # and the legend


def _crafted_eval(tmp_path, strip_name: str | None = "e.frames.png"):
    """An engine that loses 6.8 IoU points on pole, 8.5 on sign and 0.2 on road against its reference."""
    ref = {c: 0.5 for c in CLASSES}
    ours = {**ref, "pole": 0.432, "sign": 0.415, "road": 0.498}
    drops = {c: round(100 * (ref[c] - ours[c]), 3) for c in CLASSES}
    data = {"miou": 0.49, "per_class_iou": ours, "reference": {"miou": 0.5, "per_class_iou": ref},
            "miou_drop_points": 1.0, "per_class_iou_drop_points": drops, "pixel_agreement": 0.97}
    if strip_name:
        cv2.imwrite(str(tmp_path / strip_name), np.full((10, 20, 3), 128, np.uint8))
        data["samples"] = {"strip": strip_name, "columns": ["image", "engine: x"],
                           "frames": [{"index": 0, "name": "a<b", "disagreement": 0.0125}]}
    (tmp_path / "e.json").write_text(json.dumps(data))
    return tmp_path / "e.json"


def test_classes_the_engine_hurts_are_marked_in_html_and_markdown(tmp_path):
    bench = write_run(tmp_path / "b.json", [make_result("int8", noisy_rounds(5.0, 1))])
    evaluation = read_eval(_crafted_eval(tmp_path))
    rows, runs = collect([bench], {"int8": evaluation})
    page = html(rows, runs)
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert base64.b64decode(embedded.group(1)) == (tmp_path / "e.frames.png").read_bytes()
    assert "a&lt;b: 1.25%" in page and "a<b" not in page  # escaped
    assert re.findall(r'<tr style="[^"]+"><td>(\w+)</td>', page) == ["pole", "sign"]  # over 1 point, class order
    assert '<td>pole</td><td class="n">50.00</td><td class="n">43.20</td><td class="n">6.80</td>' in page
    assert '<td>road</td><td class="n">50.00</td><td class="n">49.80</td><td class="n">0.20</td>' in page
    assert "(points): sign (8.50), pole (6.80)." in page  # the worst first
    assert "<th>mIoU</th><th class=\"n\">50.00</th><th class=\"n\">49.00</th><th class=\"n\">1.00</th>" in page
    md = markdown(rows, runs, base=tmp_path)
    assert "| **pole** | 50.00 | 43.20 | **6.80** |" in md and "| road | 50.00 | 49.80 | 0.20 |" in md
    assert "![image | engine: x](e.frames.png)" in md and "**sign** (8.50), **pole** (6.80)" in md
    assert "](sub/../e.frames.png)" not in md and "](../e.frames.png)" in markdown(rows, runs, base=tmp_path / "sub")


def test_old_eval_files_still_report_and_bad_samples_are_refused(tmp_path):
    old = _crafted_eval(tmp_path, strip_name=None)  # written before the strip existed: no "samples"
    bench = write_run(tmp_path / "b.json", [make_result("int8", noisy_rounds(5.0, 1))])
    rows, runs = collect([bench], {"int8": read_eval(old)})
    page = html(rows, runs)
    assert "<h2>Segmentation: int8</h2>" in page and "data:image" not in page
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"miou": 0.5, "miou_drop_points": 0.2}))
    rows, runs = collect([bench], {"int8": read_eval(plain)})
    assert "Segmentation" not in html(rows, runs) and "Segmentation" not in markdown(rows, runs)
    for samples, message in [(3, "samples is 3"), ({"strip": ""}, "samples is"),
                             ({"strip": "x.jpg", "frames": [{"disagreement": 7}]}, "disagreement is 7"),
                             ({"strip": "x.jpg", "columns": [1]}, "samples.columns is")]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"miou": 0.5, "samples": samples}))
        with pytest.raises(EdgesegError, match=message):
            read_eval(bad)
    missing = _crafted_eval(tmp_path)
    (tmp_path / "e.frames.png").unlink()
    rows, runs = collect([bench], {"int8": read_eval(missing)})
    assert "could not be read" in html(rows, runs)
    # an eval that names some other file as its strip does not get it into the page
    (tmp_path / "e.frames.png").write_text("SECRET=1\n")
    rows, runs = collect([bench], {"int8": read_eval(missing)})
    page = html(rows, runs)
    assert "is not a JPEG or PNG image" in page and "data:image" not in page


@pytest.mark.parametrize("extra,message", [
    (["--samples", "-1"], "--samples must be 0 or more"),
    (["--strip", "frames.gif"], "cannot tell the image format"),
    (["--samples", "0", "--strip", "f.jpg"], "--strip with --samples 0 draws nothing"),
])
def test_strip_options_are_checked_before_the_engine_loads(tmp_path, capsys, extra, message):
    args = ["eval", "--engine", str(tmp_path / "no-engine"), "--data", "synthetic:2", "--json",
            str(tmp_path / "e.json"), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_strip_options_do_not_apply_to_a_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "x.pt"), "--data", "synthetic:2", "--samples", "2"]) == 2
    assert "--samples and --strip apply to --engine" in capsys.readouterr().err
