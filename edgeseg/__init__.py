"""edgeseg: segmentation networks from checkpoint to edge engine."""

__version__ = "0.1.0"
