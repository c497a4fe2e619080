"""An instance engine (Mask R-CNN) served: Triton and OVMS take its four outputs as they are; DeepStream is refused."""

from __future__ import annotations

import pytest
import torch

from edgeseg.errors import BadInputError
from edgeseg.serve import ServeRequest, check, export

pytest.importorskip("tritonclient", reason="Triton's ModelConfig schema comes with tritonclient (pip install 'edgeseg[serve]')")

SIZE = (120, 160)


@pytest.fixture(scope="module")
def instance_engine(tmp_path_factory):
    from edgeseg.build.orchestrator import BuildRequest, Destination, Int8, Source, build_engine
    from edgeseg.data.instances.synthetic import SYNTHETIC_INSTANCE_INFO
    from edgeseg.models import build
    from edgeseg.train.checkpoint import save

    torch.manual_seed(0)
    model = build("maskrcnn", 4, backbone="mobilenetv3_large", min_size=min(SIZE), max_size=max(SIZE),
                  rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=100, detections_per_img=20)
    path = tmp_path_factory.mktemp("ckpt") / "maskrcnn.pt"
    save(path, model.eval(), {"task": "instance", "instance_dataset": SYNTHETIC_INSTANCE_INFO.to_dict(),
                              "train_crop": list(SIZE)})
    out = tmp_path_factory.mktemp("eng") / "maskrcnn"
    build_engine(BuildRequest(Source(checkpoint=str(path)), backend="onnxruntime", int8=Int8(speed_guard=False),
                              destination=Destination(out=str(out))))
    return out


@pytest.mark.slow  # a Mask R-CNN export and build (~15 s)
def test_instance_engine_serves_its_four_outputs(instance_engine, tmp_path):
    from edgeseg.serve.triton_check import parse_config

    triton = export(ServeRequest(instance_engine, "triton", tmp_path / "triton"))
    config = parse_config((triton.model_dir / "config.pbtxt").read_text())
    assert config.max_batch_size == 0 and [o.name for o in config.output] == ["boxes", "labels", "scores", "masks"]
    assert len(config.output[0].dims) == 2 and not any(o.label_filename for o in config.output)  # (detections, 4)
    assert triton.kind == "instances" and "instance outputs" in triton.parity["skipped"]
    assert check(triton.model_dir) == []
    ovms = export(ServeRequest(instance_engine, "ovms", tmp_path / "ovms"))
    assert check(ovms.out) == []
    with pytest.raises(BadInputError, match="custom box and mask parser"):
        export(ServeRequest(instance_engine, "deepstream", tmp_path / "ds"))
    assert not (tmp_path / "ds" / "maskrcnn").exists()
