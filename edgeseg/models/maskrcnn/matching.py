"""Training-time assignment: which ground-truth box each anchor or proposal learns from, and which
of them a training step samples (torchvision's Matcher and BalancedPositiveNegativeSampler rules)."""

from __future__ import annotations

import torch


class Matcher:
    """Each prediction gets its best ground truth if their IoU is at least `high`, -1 below `low`, -2 between.

    With `allow_low_quality_matches`, each ground truth also keeps the predictions it overlaps most
    (so that a small object still has a positive anchor)."""

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high: float, low: float, allow_low_quality_matches: bool = False) -> None:
        if low > high:
            raise ValueError("the low threshold must not exceed the high one")
        self.high, self.low, self.allow_low_quality_matches = high, low, allow_low_quality_matches

    def __call__(self, quality: torch.Tensor) -> torch.Tensor:
        """quality: G x P IoU matrix -> P indices into the ground truth (or the negative codes)."""
        values, matches = quality.max(dim=0)
        best = matches.clone() if self.allow_low_quality_matches else None
        matches[values < self.low] = self.BELOW_LOW_THRESHOLD
        matches[(values >= self.low) & (values < self.high)] = self.BETWEEN_THRESHOLDS
        if best is not None:
            highest = quality.max(dim=1).values
            keep = torch.where(quality == highest[:, None])[1]
            matches[keep] = best[keep]
        return matches


class PositiveNegativeSampler:
    """Up to `batch_size_per_image` predictions per image, at most `positive_fraction` of them positive
    (label >= 1), the rest negative (label 0); -1 is never sampled."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction

    def __call__(self, labels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        positives, negatives = [], []
        for label in labels:
            pos = torch.where(label >= 1)[0]
            neg = torch.where(label == 0)[0]
            num_pos = min(pos.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(neg.numel(), self.batch_size_per_image - num_pos)
            pos = pos[torch.randperm(pos.numel(), device=pos.device)[:num_pos]]
            neg = neg[torch.randperm(neg.numel(), device=neg.device)[:num_neg]]
            pos_mask = torch.zeros_like(label, dtype=torch.bool)
            neg_mask = torch.zeros_like(label, dtype=torch.bool)
            pos_mask[pos] = True
            neg_mask[neg] = True
            positives.append(pos_mask)
            negatives.append(neg_mask)
        return positives, negatives
