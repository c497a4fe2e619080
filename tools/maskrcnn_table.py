"""COCO box/mask AP and latency of a Mask R-CNN checkpoint run five ways, side by side in one run: PyTorch
eager, and its exported static graph (edgeseg.models.maskrcnn.deploy) on ONNX Runtime and on OpenVINO, in
FP32 and with the backbone and pyramid in INT8 (edgeseg.build.maskrcnn_int8, calibrated on `--calib`
frames), masks pasted on the host (edgeseg.runtime.instances). The engines of the build pipeline will
replace the hand-made sessions here; the graphs are the same.

    python tools/maskrcnn_table.py --checkpoint runs/maskrcnn/best.pt --data synthetic-instances:50:val \
        --calib synthetic:32:train
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


def graph_runners(path: Path, threads: int):
    """ONNX Runtime and OpenVINO (f32 where it runs floats) callables for one graph: frame -> prediction."""
    import onnxruntime as ort
    import openvino as ov

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "INFERENCE_NUM_THREADS": threads})

    def onnxruntime(frame: np.ndarray):
        return _prediction(session.run(None, {"frames": frame[None]}), frame)

    def openvino(frame: np.ndarray):
        result = compiled({"frames": frame[None]})
        return _prediction([result[compiled.output(i)] for i in range(4)], frame)

    return onnxruntime, openvino


def _prediction(outputs, frame: np.ndarray) -> InstancePrediction:
    inst = from_outputs(*outputs, *frame.shape[:2])
    return InstancePrediction(inst.boxes, inst.labels, inst.scores, inst.masks)


def runners(model, onnx_path: Path, int8_path: Path, threads: int) -> dict:
    ort_fp32, ov_fp32 = graph_runners(onnx_path, threads)
    ort_int8, ov_int8 = graph_runners(int8_path, threads)

    def eager(frame: np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1))).float() / 255
        with torch.no_grad():
            out = model([image])[0]
        masks = out["masks"][:, 0].numpy() >= 0.5
        return InstancePrediction(out["boxes"].numpy(), out["labels"].numpy(), out["scores"].numpy(), masks)

    return {"PyTorch eager FP32": eager, "ONNX Runtime FP32": ort_fp32, "OpenVINO FP32": ov_fp32,
            "ONNX Runtime INT8 (backbone+FPN)": ort_int8, "OpenVINO INT8 (the same Q/DQ graph)": ov_int8}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", default="synthetic-instances:50:val")
    parser.add_argument("--calib", default="synthetic:32:train", help="calibration frames (never the scored split)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = build_from_checkpoint(args.checkpoint, task="instance")
    model.eval()
    dataset = parse_instance_spec(args.data, "val")
    size = dataset[0].image.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        from edgeseg.build.calibration import open_calibration
        from edgeseg.build.maskrcnn_int8 import quantize_maskrcnn

        onnx_path = export_maskrcnn(model, Path(tmp) / "maskrcnn.onnx", size)
        calib = open_calibration(args.calib, size, progress=False)
        print(quantize_maskrcnn(onnx_path, Path(tmp) / "maskrcnn.int8.onnx", calib, cache_root=Path(tmp)).summary())
        run = runners(model, onnx_path, Path(tmp) / "maskrcnn.int8.onnx", args.threads)
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
    print("| runner | box AP | mask AP | mask AP50 | detections | median ms (incl. host paste) |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in run:
        m = evaluate_instances(truth, predictions[name])
        print(f"| {name} | {m.box_ap:.2f} | {m.mask_ap:.2f} | {m.mask_ap50:.2f} | {m.predictions} | "
              f"{np.median(times[name]):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
