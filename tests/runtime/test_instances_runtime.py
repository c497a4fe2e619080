"""Instances on the host: torchvision's mask paste without torch, and instance overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeseg.models.maskrcnn.ops import paste_masks as torch_paste
from edgeseg.runtime.instances import Instances, from_outputs, instance_colors, paste_masks, render_instances


def test_paste_matches_the_networks_own_paste():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand((6, 28, 28), generator=generator)
    boxes = torch.tensor([[10.3, 5.7, 80.2, 60.9], [0, 0, 159, 119], [-20, -10, 30, 25], [150, 100, 175, 130],
                          [40.5, 40.5, 41.0, 41.2], [200, 200, 240, 260]])
    ours = paste_masks(masks.numpy(), boxes.numpy(), 120, 160)
    theirs = torch_paste(masks[:, None], boxes, 120, 160)[:, 0].numpy()
    assert ours.shape == theirs.shape == (6, 120, 160)
    assert np.abs(ours - theirs).max() < 1e-5
    assert ours[5].max() == 0  # a box outside the frame pastes nothing


def test_outputs_become_frame_sized_instances():
    masks = np.zeros((2, 28, 28), np.float32)
    masks[:, 7:21, 7:21] = 0.9
    inst = from_outputs(np.array([[10, 10, 50, 50], [60, 20, 100, 90]], np.float32), np.array([1, 2]),
                        np.array([0.9, 0.4], np.float32), masks, 120, 160)
    assert inst.masks.shape == (2, 120, 160) and inst.masks.dtype == bool
    assert inst.masks[0, 30, 30] and not inst.masks[0, 5, 5] and not inst.masks[0, 30, 80]
    assert len(inst.above(0.5)) == 1


def test_each_instance_has_its_own_colour_and_the_overlay_is_drawn():
    palette = [(0, 0, 255), (255, 0, 0)]
    labels = np.array([1, 1, 2, 1])
    colors = instance_colors(labels, palette)
    assert len({tuple(c) for c in colors}) == 4  # three cars, each its own shade, and a pedestrian
    assert tuple(colors[2]) == (0, 0, 255)  # BGR of the pedestrian's red: the class colour for the first
    frame = np.full((60, 80, 3), 100, np.uint8)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:30, 10:30] = True
    masks[1, 20:40, 20:50] = True
    inst = Instances(np.array([[10, 10, 30, 30], [20, 20, 50, 40]], np.float32), np.array([1, 2]),
                     np.array([0.9, 0.8], np.float32), masks)
    out = render_instances(frame, inst, ["car", "pedestrian"], palette, labels=False)
    assert out.shape == frame.shape and (out[5, 70] == 100).all()  # background untouched
    assert out[15, 15, 0] > 100 and out[35, 45, 2] > 100  # the car blued, the pedestrian reddened (palette is RGB)
    assert not np.array_equal(render_instances(frame, inst, ["car", "pedestrian"], palette), out)  # labels drawn
    empty = Instances(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                      np.zeros((0, 60, 80), bool))
    assert np.array_equal(render_instances(frame, empty, ["car"], palette), frame)
