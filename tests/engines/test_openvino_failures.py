"""OpenVINO and NNCF errors keep their cause (the lines after OpenVINO's source-location trace) and get a
fix that fits it: a missing device, an unsupported operation, a damaged file, a folder that cannot be
written."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeseg.backends.openvino.failures import cause_kind, meaningful_lines, nncf_fix, reported, summary
from edgeseg.errors import BadInputError, EdgesegError

DEVICE = ('Exception from src/inference/src/cpp/core.cpp:132:\nException from src/inference/src/dev/core_impl.cpp:706:\n'
          'Device with "FOO" name is not registered in the OpenVINO Runtime\n\n')
CORRUPT = ("Exception from src/inference/src/cpp/core.cpp:132:\nException from src/inference/src/dev/plugin.cpp:59:\n"
           "Check 'res.status == pugi::status_ok' failed at src/frontends/ir/src/input_model.cpp:219:\n"
           "Error parsing start element tag at offset 299\n\n\n")
UNSUPPORTED = ("Check 'false' failed at src/frontends/common_translators/src/unconverted_ops_report.cpp:151:\n"
               "FrontEnd API failed with OpConversionFailure:\nModel wasn't fully converted.\nSummary:\n"
               "-- No conversion rule found for operations: com.foo.FooBarOp\n")
NPU = ("Exception from src/inference/src/cpp/core.cpp:132:\nVCL compiler loading failed, aborting. Error: Exception "
       "from src/plugins/intel_npu/src/utils/src/vcl/vcl_api.cpp:22:\nCannot load library \"libnpu.so\": cannot open "
       "shared object file: No such file or directory\n")


@pytest.mark.parametrize("message,kind,kept", [
    (DEVICE, "device", 'Device with "FOO" name is not registered in the OpenVINO Runtime'),
    (CORRUPT, "corrupt", "Error parsing start element tag at offset 299"),
    (UNSUPPORTED, "unsupported", "-- No conversion rule found for operations: com.foo.FooBarOp"),
    (NPU, "device", 'Cannot load library "libnpu.so": cannot open shared object file: No such file or directory'),
    ('Couldn\'t create directory ["/proc/nope"], err=No such file or directory)', "write", None),
])
def test_the_cause_is_kept_and_sorted(message, kind, kept):
    lines = meaningful_lines(RuntimeError(message))
    assert not any(line.startswith(("Exception from", "Check '")) or ".cpp:" in line for line in lines)
    assert kept is None or kept in lines
    assert cause_kind("\n".join(lines)) == kind


def test_a_long_message_is_bounded():
    text = summary(RuntimeError("\n".join(f"-- operation {i} is not supported" for i in range(50))))
    assert len(text) <= 600 and "more lines" in text


def test_reported_passes_edgeseg_errors_and_interrupts_through():
    with pytest.raises(BadInputError, match="mine"):
        with reported("x", lambda kind, exc: "fix"):
            raise BadInputError("mine", "my fix")
    with pytest.raises(KeyboardInterrupt):
        with reported("x", lambda kind, exc: "fix"):
            raise KeyboardInterrupt
    with pytest.raises(EdgesegError, match="NNCF cannot quantize the IR: .*not supported") as info:
        with reported("NNCF cannot quantize the IR", nncf_fix):
            raise RuntimeError("Exception from a.cpp:1:\nLayer conv1 of type Foo is not supported")
    assert "--keep-float" in info.value.fix


@pytest.fixture(scope="module")
def ir(tmp_path_factory) -> Path:
    ov = pytest.importorskip("openvino", reason="openvino is not installed")
    import onnx
    from onnx import TensorProto, helper

    folder = tmp_path_factory.mktemp("ir")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(folder / "ok.onnx"))
    ov.save_model(ov.convert_model(str(folder / "ok.onnx")), str(folder / "model.xml"))
    return folder


def test_compile_on_a_device_that_is_not_there_names_it_and_the_devices_that_are(ir):
    import openvino as ov

    from edgeseg.backends.openvino.session import compile_ir

    with pytest.raises(EdgesegError, match='Device with "NOSUCH" name is not registered') as info:
        compile_ir(ov.Core(), ir / "model.xml", "NOSUCH", "fp32", "latency", None)
    assert "CPU" in info.value.fix and "--device" in info.value.fix


def test_compile_of_a_damaged_ir_says_it_is_damaged(ir, tmp_path):
    import openvino as ov

    from edgeseg.backends.openvino.session import compile_ir

    (tmp_path / "model.xml").write_text((ir / "model.xml").read_text()[:300])
    (tmp_path / "model.bin").write_bytes((ir / "model.bin").read_bytes())
    with pytest.raises(EdgesegError, match="Error parsing") as info:
        compile_ir(ov.Core(), tmp_path / "model.xml", "CPU", "fp32", "latency", None)
    assert "damaged" in info.value.fix and "--force" in info.value.fix


def test_convert_of_an_unsupported_op_names_the_op(ir, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgeseg.backends.openvino import build as ov_build
    from edgeseg.build.spec import BuildSpec

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    graph = helper.make_graph([helper.make_node("FooBarOp", ["x"], ["y"], domain="com.foo")], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.foo", 1)]),
              str(tmp_path / "odd.onnx"))
    spec = BuildSpec("fp32", (1, 3, 4, 4), "x")
    with pytest.raises(EdgesegError, match="No conversion rule found for operations: com.foo.FooBarOp") as info:
        ov_build.build(tmp_path / "odd.onnx", tmp_path / "out", spec)
    assert "exporter" in info.value.fix
