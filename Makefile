# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
PIP_INSTALL := $(PIP) install --quiet --constraint constraints.txt

.PHONY: demo test install install-dev check-torch system-streams

# torch first, from the CPU wheel these machines carry, so no dependency can pull a CUDA build.
install:
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[export,openvino]"
	@$(MAKE) --no-print-directory check-torch

install-dev:
	$(PIP_INSTALL) torch==2.13.0
	$(PIP_INSTALL) -e ".[export,openvino,dev]"
	@$(MAKE) --no-print-directory check-torch

check-torch:
	@$(PYTHON) -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('2.13.0') else 'expected torch 2.13.0, found ' + v)"

# The main job on the embedded default (synthetic road scenes); real data with DATA=camvid:PATH.
DATA ?= synthetic
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)

# Train a real-time net, build FP32/INT8, eval, bench, stream a road video, report: `edgeseg demo`.
demo: install
	$(PYTHON) -m edgeseg demo --data $(DATA) --out $(DEMO_RUN)

test: install-dev
	$(PYTHON) -m pytest -q

# What the real-network stream tests need from Debian (`.ci/run` runs it as root on a fresh machine): GStreamer's
# RTSP server for the loopback camera servers (tools/rtsp_server.py, system Python), and Debian's OpenCV, which
# has GStreamer (the pip wheel has not), in .venv-gst beside Debian's numpy and ONNX Runtime from PyPI: the
# smallest vehicle image, on which the --gst tests run `edgeseg stream`.
STREAM_DEBS := python3-opencv python3-gi python3-venv gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
system-streams:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(STREAM_DEBS) >/dev/null \
		|| (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(STREAM_DEBS) >/dev/null)
	/usr/bin/python3 -m venv --system-site-packages .venv-gst
	.venv-gst/bin/pip install --quiet onnxruntime tqdm "numpy==$$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')"
	.venv-gst/bin/python -c "import re, cv2, onnxruntime; assert re.search(r'GStreamer:\s*YES', cv2.getBuildInformation()); print('.venv-gst: OpenCV', cv2.__version__, '(GStreamer), onnxruntime', onnxruntime.__version__)"

