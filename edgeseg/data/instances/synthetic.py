"""`synthetic-instances[:N][:split]`: the procedural road scenes of `synthetic`, with every car,
pedestrian and bicyclist as an instance (the embedded default: no download).

Sample i is the very image of `synthetic`'s sample i (same split, size and seed), painted once more with
an instance map: every shape that sets a class also sets its object's id (0 for stuff), so a tree or
pole in front cuts the car behind it exactly as it cuts its label, and each instance's pixels carry
its class in the semantic label map. Objects with fewer than MIN_PIXELS visible pixels (the far and the
almost hidden ones, which no detector finds at this size) are left out, as are fully hidden ones.
"""

from __future__ import annotations

import numpy as np

from edgeseg.data._synthetic_draw import finish
from edgeseg.data.camvid import CAMVID_INFO
from edgeseg.data.instances.base import (
    InstanceDataset,
    InstanceInfo,
    InstanceSample,
    masks_to_boxes,
    split_instance_map,
)
from edgeseg.data.synthetic import SPLIT_CODES, SyntheticRoadScenes, _paint, _scene

MIN_PIXELS = 16  # a 4 x 4 patch: fewer visible pixels hold too little of an object to learn or score
_KINDS = {"car": 1, "person": 2, "bicyclist": 3}  # Thing kind -> label
SYNTHETIC_INSTANCE_INFO = InstanceInfo(
    name="synthetic-instances", classes=("car", "pedestrian", "bicyclist"),
    palette=tuple(CAMVID_INFO.palette[CAMVID_INFO.classes.index(c)] for c in ("car", "pedestrian", "bicyclist")))


class SyntheticInstanceScenes(InstanceDataset):
    """`count` road scenes of one split with their instances; sample i is generated on access, always the same."""

    info = SYNTHETIC_INSTANCE_INFO

    def __init__(self, count: int = 200, split: str = "train", size: tuple[int, int] = (360, 480),
                 seed: int = 0) -> None:
        semantic = SyntheticRoadScenes(count, split, size, seed)  # checks the arguments; names the same images
        self.semantic, self.count, self.split, self.size, self.seed = semantic, semantic.count, split, \
            semantic.size, semantic.seed

    def __len__(self) -> int:
        return self.count

    def render(self, index: int) -> tuple[InstanceSample, np.ndarray]:
        """Sample `index` and its semantic label map (CamVid's classes), drawn together."""
        if not -self.count <= index < self.count:
            raise IndexError(f"synthetic-instances {self.split} index {index} out of range for {self.count} images")
        index %= self.count
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])  # as SyntheticRoadScenes
        scene = _scene(rng, *self.size)
        canvas = _paint(scene, 0.0, instances=True)
        image = finish(canvas, scene.look, rng)
        ids, counts = np.unique(canvas.instance, return_counts=True)
        ids = ids[(ids > 0) & (counts >= MIN_PIXELS)]
        masks = split_instance_map(canvas.instance, ids)
        labels = np.array([_KINDS[scene.things[k - 1].kind] for k in ids.tolist()], np.int64)
        sample = InstanceSample(image, masks_to_boxes(masks), labels, masks, np.zeros(len(ids), np.uint8),
                                f"synthetic_{self.split}_{index:05d}", index + 1)
        return sample, canvas.label

    def __getitem__(self, index: int) -> InstanceSample:
        return self.render(index)[0]

    def image_names(self) -> list[str]:
        return self.semantic.image_names()
