"""COCO box/mask AP and latency of a Mask R-CNN checkpoint run three ways, side by side in one run: PyTorch
eager, and its exported static graph (edgeseg.models.maskrcnn.deploy) on ONNX Runtime and on OpenVINO, FP32,
masks pasted on the host (edgeseg.runtime.instances). The engines of the build pipeline will replace the
hand-made sessions here; the graph is the same.

    python tools/maskrcnn_table.py --checkpoint runs/maskrcnn/best.pt --data synthetic-instances:50:val
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeseg.data.instances import parse_instance_spec  # noqa: E402
from edgeseg.measure.instance_metrics import InstancePrediction, evaluate_instances  # noqa: E402
from edgeseg.models.maskrcnn.deploy import export_maskrcnn  # noqa: E402
from edgeseg.runtime.instances import from_outputs  # noqa: E402
from edgeseg.train.checkpoint import build_from_checkpoint  # noqa: E402
from edgeseg.train.instances import to_tensors  # noqa: E402


def runners(model, onnx_path: Path, threads: int) -> dict:
    import onnxruntime as ort
    import openvino as ov

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                              "INFERENCE_NUM_THREADS": threads})

    def eager(frame: np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1))).float() / 255
        with torch.no_grad():
            out = model([image])[0]
        masks = out["masks"][:, 0].numpy() >= 0.5
        return InstancePrediction(out["boxes"].numpy(), out["labels"].numpy(), out["scores"].numpy(), masks)

    def onnxruntime(frame: np.ndarray):
        boxes, labels, scores, masks = session.run(None, {"frames": frame[None]})
        inst = from_outputs(boxes, labels, scores, masks, *frame.shape[:2])
        return InstancePrediction(inst.boxes, inst.labels, inst.scores, inst.masks)

    def openvino(frame: np.ndarray):
        result = compiled({"frames": frame[None]})
        boxes, labels, scores, masks = (result[compiled.output(i)] for i in range(4))
        inst = from_outputs(boxes, labels, scores, masks, *frame.shape[:2])
        return InstancePrediction(inst.boxes, inst.labels, inst.scores, inst.masks)

    return {"PyTorch eager FP32": eager, "ONNX Runtime FP32": onnxruntime, "OpenVINO FP32": openvino}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", default="synthetic-instances:50:val")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = build_from_checkpoint(args.checkpoint, task="instance")
    model.eval()
    dataset = parse_instance_spec(args.data, "val")
    size = dataset[0].image.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_maskrcnn(model, Path(tmp) / "maskrcnn.onnx", size)
        run = runners(model, onnx_path, args.threads)
        predictions = {name: {} for name in run}
        times = {name: [] for name in run}
        for index in range(len(dataset)):
            sample = dataset[index]
            for name, runner in run.items():  # interleaved: the machine's drift touches every runner alike
                t0 = time.perf_counter()
                predictions[name][sample.image_id] = runner(sample.image)
                times[name].append(1000 * (time.perf_counter() - t0))
    truth = dataset.coco_ground_truth()
    print(f"{len(dataset)} images of {args.data} at {size[0]}x{size[1]}, {args.threads} threads\n")
    print("| runner | box AP | mask AP | mask AP50 | median ms (incl. host paste) |\n| --- | ---: | ---: | ---: | ---: |")
    for name in run:
        m = evaluate_instances(truth, predictions[name])
        print(f"| {name} | {m.box_ap:.2f} | {m.mask_ap:.2f} | {m.mask_ap50:.2f} | {np.median(times[name]):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
