"""`edgeseg models` (the zoo with parameters and GMACs) and `edgeseg train`."""

from __future__ import annotations

import argparse
import json

from edgeseg.cli.common import size_arg as _size_arg
from edgeseg.errors import BadInputError


def run_models(args: argparse.Namespace) -> int:
    from edgeseg.models import entry, names
    from edgeseg.models.complexity import measure
    from edgeseg.weights import for_model

    selected = args.name or names()
    rows = []
    for name in selected:
        model_entry = entry(name)
        for backbone in model_entry.backbones or (None,):
            options = {"backbone": backbone} if backbone else {}
            c = measure(name, args.num_classes, args.input_size, **options)
            weights = for_model(name, options)
            shipped = None if weights is None else {"key": weights.key, "dataset": weights.dataset,
                                                    "val_miou": weights.miou}
            rows.append({"name": name, "family": model_entry.family, "backbone": backbone,
                         "default_backbone": backbone == model_entry.default_backbone,
                         "backbones": list(model_entry.backbones), "params": c.params,
                         "gmacs": round(c.gmacs, 3), "paper": model_entry.paper, "shipped": shipped})
    if args.json:
        print(json.dumps({"input_size": list(args.input_size), "num_classes": args.num_classes, "models": rows},
                         indent=2))
        return 0
    if args.markdown:
        print("| model | family | backbone | params (M) | GMACs | shipped weights |\n"
              "| --- | --- | --- | ---: | ---: | --- |")
    else:
        print(f"{'model':15s} {'family':14s} {'backbone':20s} {'params (M)':>10s} {'GMACs':>8s}  shipped weights")
    for r in rows:
        backbone = (r["backbone"] or "-") + (" *" if r["default_backbone"] and len(r["backbones"]) > 1 else "")
        shipped = (f"{r['shipped']['dataset']} {100 * r['shipped']['val_miou']:.1f}% val mIoU" if r["shipped"]
                   else "-")
        if args.markdown:
            print(f"| `{r['name']}` | {r['family']} | {backbone} | {r['params'] / 1e6:.2f} | {r['gmacs']:.2f} | "
                  f"{shipped} |")
        else:
            print(f"{r['name']:15s} {r['family']:14s} {backbone:20s} {r['params'] / 1e6:10.2f} {r['gmacs']:8.2f}  "
                  f"{shipped}")
    h, w = args.input_size
    print(f"\n{len(rows)} variants of {len(selected)} models; {args.num_classes} classes; GMACs at "
          f"{h}x{w}, batch 1 (convolutions and matmuls); * = default backbone; shipped weights: "
          "`edgeseg build --model NAME` builds them without --checkpoint")
    return 0


def _model_options(args: argparse.Namespace) -> dict:
    options = {}
    for text in args.option or []:
        key, sep, value = text.partition("=")
        if not sep:
            raise BadInputError(f"cannot read option '{text}'", "write model options as KEY=VALUE, e.g. aux=true")
        options[key] = _literal(value)
    for key in ("backbone", "output_stride", "pretrained_backbone"):
        if getattr(args, key, None) is not None:
            options[key] = getattr(args, key)
    if getattr(args, "aux", False):
        options["aux"] = True
    return options


def _literal(value: str):
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if "," in value:
        return [_literal(v) for v in value.split(",")]
    return value


def _class_weights(text: str):
    if text in ("none", "median"):
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise BadInputError(f"cannot read class weights '{text}'",
                            "use none, median, or one number per class separated by commas") from None


def _scale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"cannot read scale range '{text}'; write MIN,MAX, e.g. 0.5,2.0") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"scale range '{text}' must satisfy 0 < MIN <= MAX")
    return low, high


def run_train(args: argparse.Namespace) -> int:
    from edgeseg.io import require_writable_folder
    from edgeseg.train.loop import TrainConfig, default_workers, train

    out = args.out or f"runs/{args.model}"
    # before the data is read and the first epoch runs: a run folder that cannot be written fails now
    require_writable_folder(out, "the run folder (--out)", "pass --out DIR in a folder you can write to")
    config = TrainConfig(
        model=args.model, data=args.data, out=out, model_options=_model_options(args),
        val=args.val, epochs=args.epochs, batch_size=args.batch_size, crop=args.crop, optimizer=args.optimizer,
        scale_range=args.scale_range, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, class_weights=_class_weights(args.class_weights),
        aux_weight=args.aux_weight, precision=args.precision, threads=args.threads,
        workers=default_workers() if args.workers is None else args.workers, seed=args.seed,
        val_size=args.val_size, resume=args.resume, progress=not args.no_progress)
    result = train(config)
    if hasattr(result, "best_mask_ap"):
        print(f"best val mask AP {100 * result.best_mask_ap:.2f} at epoch {result.best_epoch}: {result.best_path}")
    else:
        print(f"best val mIoU {100 * result.best_miou:.2f}% at epoch {result.best_epoch}: {result.best_path}")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo with parameters and GMACs")
    p.add_argument("name", nargs="*", help="only these models (default: all)")
    p.add_argument("--input-size", type=_size_arg, default=(360, 480), metavar="HxW",
                   help="input size for GMACs (default 360x480, CamVid)")
    p.add_argument("--num-classes", type=int, default=11, help="classifier width (default 11, CamVid)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="a Markdown table (the one in docs/zoo.md)")
    p.set_defaults(func=run_models)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a zoo network on a dataset")
    p.add_argument("--model", required=True, help="zoo name, see `edgeseg models`")
    p.add_argument("--backbone")
    p.add_argument("--output-stride", type=int)
    p.add_argument("--aux", action="store_true", help="train with the auxiliary head where the model has one")
    p.add_argument("--pretrained-backbone", metavar="PATH", help="ImageNet weights in torchvision's format")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="other model options, repeatable")
    p.add_argument("--data", default="synthetic", help="dataset spec (default: synthetic road scenes)")
    p.add_argument("--val", help="validation dataset spec (default: the val split of --data)")
    p.add_argument("--out", help="run folder (default runs/MODEL)")
    p.add_argument("--epochs", type=int, help="default 50, or 8 on the synthetic scenes")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=_size_arg, default=(360, 480), metavar="HxW")
    p.add_argument("--scale-range", type=_scale_range, default=(0.5, 2.0), metavar="MIN,MAX",
                   help="random scale augmentation range (default 0.5,2.0)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--class-weights", default="none", help="none, median (median-frequency balancing) or w0,w1,...")
    p.add_argument("--aux-weight", type=float, default=0.4)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bf16 autocast where the CPU has bf16 units")
    p.add_argument("--threads", type=int)
    p.add_argument("--workers", type=int, help="data loader processes (default 1 on small machines)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=_size_arg, metavar="HxW", help="validate resized to this size (default full)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from last.pt")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)


def add_commands(sub) -> None:
    _add_models(sub)
    _add_train(sub)
