"""Measuring engines: the evaluation loop (mIoU, drop against a reference), the bench (latency, FPS,
stages), the CI regression gate, and the reports that carry them (Markdown, HTML, SVG plots).

Torch-free except `torch_baseline`, which `edgeseg bench --baseline-torch` imports on request."""
