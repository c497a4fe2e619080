"""Torch batches from numpy datasets: augmentation in workers, deterministic per (seed, epoch, index)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from edgeseg.data.base import SegDataset
from edgeseg.data.transforms import TrainAugment


class TorchSegDataset(Dataset):
    """Yields (image uint8 H x W x 3 BGR, label int64 H x W) tensors; normalization happens in the
    batch on the training process (Preprocess), one vectorized op instead of one per sample."""

    def __init__(self, dataset: SegDataset, augment: TrainAugment | None = None, seed: int = 0) -> None:
        self.dataset = dataset
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        sample = self.dataset[index]
        image, label = sample.image, sample.label
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, label = self.augment(image, label, rng)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(label.astype(np.int64))


def train_loader(dataset: SegDataset, augment: TrainAugment, batch_size: int, workers: int, seed: int) -> DataLoader:
    wrapped = TorchSegDataset(dataset, augment, seed)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(wrapped, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size,
                      num_workers=workers, generator=generator, persistent_workers=False)
