# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
PIP_INSTALL := $(PIP) install --quiet --constraint constraints.txt

.PHONY: demo test install install-dev check-torch

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
