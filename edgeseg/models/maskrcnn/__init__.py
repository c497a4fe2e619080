"""Mask R-CNN (He et al. 2017): instances (box, class, score, mask) rather than a label per pixel.

Built as torchvision builds it, module for module, so that torchvision's COCO checkpoints load with
strict=True and give its detections:
- v1 (`maskrcnn_resnet50_fpn`): ResNet-50 with frozen batch norm, FPN without norm, a one-conv RPN head,
  the two-layer MLP box head; 44,401,393 parameters with 91 classes.
- v2 (`maskrcnn_resnet50_fpn_v2`, Li et al. 2021's recipe): trainable batch norm throughout, a two-conv
  RPN head, a 4-conv + FC box head and a normed mask head; 46,359,409 parameters.
- the edge variant: the MobileNetV3-Large FPN of torchvision's `fasterrcnn_mobilenet_v3_large_fpn` (its
  keys, so a checkpoint of that detector loads into everything but the mask branch) with v1's mask head.

`num_classes` counts the background, as torchvision's does (91 for COCO: 80 classes and unused ids).
In eval mode the network takes a list of 3 x H x W RGB float images in 0..1 (or one N x 3 x H x W
tensor) and returns per image a dict of boxes (x0 y0 x1 y1, input pixels), labels, scores and masks
(K x 1 x H x W probabilities); in training mode, with targets, a dict of the five losses.
Deviations (docs/instances.md): NMS and RoIAlign are plain torch (`ops`), and the training mask targets
use a fixed 2x2 RoIAlign sampling where torchvision adapts it to each box.
"""

from __future__ import annotations

from torch import nn

from edgeseg.errors import BadInputError
from edgeseg.models import ModelEntry
from edgeseg.models.maskrcnn import fpn
from edgeseg.models.maskrcnn.ops import FrozenBatchNorm2d
from edgeseg.models.maskrcnn.roi_heads import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    MaskRCNNHeads,
    MaskRCNNPredictor,
    MultiScaleRoIAlign,
    RoIHeads,
    TwoMLPHead,
)
from edgeseg.models.maskrcnn.rpn import AnchorGenerator, RegionProposalNetwork, RPNHead
from edgeseg.models.maskrcnn.transform import RCNNTransform

COCO_MEAN, COCO_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LEVELS = ["0", "1", "2", "3"]


class MaskRCNN(nn.Module):
    task = "instance"

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: RoIHeads,
                 transform: RCNNTransform, num_classes: int) -> None:
        super().__init__()
        self.transform, self.backbone, self.rpn, self.roi_heads = transform, backbone, rpn, roi_heads
        self.num_classes = num_classes

    def forward(self, images, targets: list[dict] | None = None):
        images = list(images)
        if self.training:
            check_targets(targets, len(images))
        original_sizes = [(int(i.shape[-2]), int(i.shape[-1])) for i in images]
        batched, sizes, targets = self.transform(images, targets)
        features = self.backbone(batched)
        proposals, rpn_losses = self.rpn((int(batched.shape[-2]), int(batched.shape[-1])), sizes, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.transform.postprocess(detections, sizes, original_sizes)


def check_targets(targets: list[dict] | None, count: int) -> None:
    """Training targets as torchvision takes them; a degenerate box would make a NaN box loss."""
    if targets is None or len(targets) != count:
        raise BadInputError("training Mask R-CNN needs one target dict per image",
                            "pass targets=[{'boxes': Nx4, 'labels': N, 'masks': NxHxW}, ...]")
    for i, target in enumerate(targets):
        boxes = target["boxes"]
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise BadInputError(f"target {i}: boxes of shape {tuple(boxes.shape)}, expected N x 4", "pass x0 y0 x1 y1 boxes")
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if degenerate.any():
            raise BadInputError(f"target {i}: box {boxes[degenerate][0].tolist()} has no width or height",
                                "drop degenerate boxes before training (the instance datasets do)")


def _heads(channels: int, num_classes: int, anchors: AnchorGenerator, version: int, options: dict):
    norm = nn.BatchNorm2d if version == 2 else None
    rpn = RegionProposalNetwork(
        anchors, RPNHead(channels, anchors.num_anchors_per_location()[0], conv_depth=2 if version == 2 else 1),
        pre_nms_top_n={"training": options["rpn_pre_nms_top_n_train"], "testing": options["rpn_pre_nms_top_n_test"]},
        post_nms_top_n={"training": options["rpn_post_nms_top_n_train"],
                        "testing": options["rpn_post_nms_top_n_test"]},
        nms_thresh=0.7, score_thresh=options["rpn_score_thresh"])
    if version == 2:
        box_head: nn.Module = FastRCNNConvFCHead(channels, 7, norm)
    else:
        box_head = TwoMLPHead(channels * 7 * 7, 1024)
    roi_heads = RoIHeads(MultiScaleRoIAlign(LEVELS, 7, 2), box_head, FastRCNNPredictor(1024, num_classes),
                         MultiScaleRoIAlign(LEVELS, 14, 2), MaskRCNNHeads(channels, 4, norm),
                         MaskRCNNPredictor(256, 256, num_classes), score_thresh=options["box_score_thresh"],
                         nms_thresh=options["box_nms_thresh"], detections_per_img=options["detections_per_img"],
                         batch_size_per_image=options["box_batch_size_per_image"])
    return rpn, roi_heads


def _trainable(requested: int | None, trained_start: bool, all_layers: int) -> int:
    """torchvision's rule: from trained weights the last 3 stages train, from scratch all of them."""
    if requested is not None:
        return requested
    return 3 if trained_start else all_layers


def maskrcnn(num_classes: int, *, backbone: str = "resnet50", version: int = 1, frozen_bn: bool | None = None,
             trainable_layers: int | None = None, min_size: int = 800, max_size: int = 1333, rpn_score_thresh: float | None = None,
             rpn_pre_nms_top_n_test: int = 1000, rpn_post_nms_top_n_test: int = 1000,
             rpn_pre_nms_top_n_train: int = 2000, rpn_post_nms_top_n_train: int = 2000,
             box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5, detections_per_img: int = 100,
             box_batch_size_per_image: int = 512, pretrained_backbone: str | None = None) -> MaskRCNN:
    """torchvision's defaults throughout (800-pixel short side); edge builds pass their frame size as
    min_size/max_size. `frozen_bn` defaults to torchvision's checkpoint layout: frozen for v1 and the
    MobileNet (their COCO files), trainable for v2; train from scratch with frozen_bn=False.
    `trainable_layers` (backbone stages that train) follows torchvision: 3 from trained weights, all
    from scratch."""
    if num_classes < 2:
        raise BadInputError(f"Mask R-CNN's num_classes counts the background: {num_classes} leaves no class",
                            "pass the number of object classes + 1 (91 for torchvision's COCO checkpoints)")
    if version not in (1, 2):
        raise BadInputError(f"Mask R-CNN version {version!r} does not exist", "pass version=1 or version=2")
    if version == 2 and backbone != "resnet50":
        raise BadInputError("Mask R-CNN v2 is a ResNet-50 network", "use backbone='resnet50' with version=2")
    options = dict(rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
                   rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
                   box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
                   detections_per_img=detections_per_img, box_batch_size_per_image=box_batch_size_per_image)
    if backbone == "resnet50":
        frozen = version == 1 if frozen_bn is None else frozen_bn
        norm = FrozenBatchNorm2d if frozen else nn.BatchNorm2d
        trained_start = frozen or pretrained_backbone is not None
        body = fpn.resnet50_fpn(norm, nn.BatchNorm2d if version == 2 else None,
                                _trainable(trainable_layers, trained_start, 5))
        anchors = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),) * 5)
        options["rpn_score_thresh"] = 0.0 if rpn_score_thresh is None else rpn_score_thresh
    elif backbone == "mobilenetv3_large":
        frozen = True if frozen_bn is None else frozen_bn
        trained_start = frozen or pretrained_backbone is not None
        body = fpn.mobilenetv3_large_fpn(FrozenBatchNorm2d if frozen else nn.BatchNorm2d,
                                         _trainable(trainable_layers, trained_start, 6))
        anchors = AnchorGenerator(((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3)
        options["rpn_score_thresh"] = 0.05 if rpn_score_thresh is None else rpn_score_thresh
    else:
        from edgeseg.errors import UnknownNameError

        raise UnknownNameError("backbone", backbone, ("resnet50", "mobilenetv3_large"))
    if pretrained_backbone is not None:
        from edgeseg.models.weights import load_backbone_weights

        load_backbone_weights(body.body, pretrained_backbone)
    rpn, roi_heads = _heads(body.out_channels, num_classes, anchors, version, options)
    transform = RCNNTransform((min_size,), max_size, COCO_MEAN, COCO_STD)
    return MaskRCNN(body, rpn, roi_heads, transform, num_classes)


MODELS = [
    ModelEntry("maskrcnn", "maskrcnn", maskrcnn, ("resnet50", "mobilenetv3_large"),
               "He et al., Mask R-CNN, ICCV 2017", task="instance"),
]

__all__ = ["MaskRCNN", "maskrcnn", "MODELS"]
