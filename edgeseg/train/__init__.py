"""Training: the loop (`train`, `TrainConfig`), edgeseg's checkpoints, and the PyTorch predictor that
scores a checkpoint through the shared evaluation loop (edgeseg.measure.evaluate)."""

from edgeseg.train.loop import TrainConfig, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
