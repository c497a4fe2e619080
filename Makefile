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

demo: install
	$(PYTHON) -m edgeseg models --input-size 360x480
	$(PYTHON) -m edgeseg train --model deeplabv3plus --backbone mobilenetv2 --data $(DATA) --out $(DEMO_RUN)
	$(PYTHON) -m edgeseg eval --checkpoint $(DEMO_RUN)/best.pt --data $(DATA):val --json $(DEMO_RUN)/eval.json
	$(PYTHON) -m edgeseg doctor
	$(PYTHON) -m edgeseg build --checkpoint $(DEMO_RUN)/best.pt --backend torch --out $(DEMO_RUN)/engines/torch-fp32
	$(PYTHON) -m edgeseg build --checkpoint $(DEMO_RUN)/best.pt --backend auto --out $(DEMO_RUN)/engines/auto-fp32
	$(PYTHON) -m edgeseg build --checkpoint $(DEMO_RUN)/best.pt --backend auto --precision fp16 --out $(DEMO_RUN)/engines/auto-fp16 \
	  || echo "(no FP16 build on this machine's best backend; see the message above)"
	$(PYTHON) -m edgeseg build --checkpoint $(DEMO_RUN)/best.pt --backend auto --precision int8 --calib $(DATA):train \
	  --calib-size 64 --val $(DATA):val --max-miou-drop 1.0 --out $(DEMO_RUN)/engines/auto-int8
	$(PYTHON) -m edgeseg eval --engine $(DEMO_RUN)/engines/auto-int8 --reference $(DEMO_RUN)/engines/auto-fp32 \
	  --data $(DATA):val --json $(DEMO_RUN)/eval-int8.json
	$(PYTHON) -m edgeseg bench $(DEMO_RUN)/engines/torch-fp32 $$(ls -d $(DEMO_RUN)/engines/auto-*) --data $(DATA):val --json $(DEMO_RUN)/bench.json
	@echo "demo run: $(DEMO_RUN) (best.pt, history.json, eval.json, eval-int8.json, engines/, bench.json)"

test: install-dev
	$(PYTHON) -m pytest -q
