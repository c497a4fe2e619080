"""Put a trained checkpoint (or CamVid train frames) into the package, as `edgeseg build --model NAME`
uses them without flags.

    python tools/ship_weights.py weights --checkpoint runs/camvid-dlv3p-mnv2/best.pt \
        --key deeplabv3plus-mobilenetv2-camvid --data camvid:../shared/data/camvid:val
    python tools/ship_weights.py calibration --data camvid:../shared/data/camvid:train --count 48

`weights` stores the checkpoint with FP16 weights and no optimizer state, evaluates *that* file on the
val split (full 360x480, single scale) through edgeseg's one evaluation loop, and writes the file, its
card (KEY.md) and its entry in edgeseg/weights/index.json (sha256, model, figures). `calibration`
copies evenly spread train frames, bytes unchanged, into edgeseg/weights/calibration/camvid-train/.
Nothing is replaced without --force.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from edgeseg.data import parse_spec
from edgeseg.io import atomic_path, sha256_file
from edgeseg.measure.envinfo import cpu_info
from edgeseg.measure.evaluate import evaluate
from edgeseg.train import checkpoint
from edgeseg.train.predictor import TorchPredictor
from edgeseg.weights import CALIBRATION, HERE, INDEX

CALIBRATION_REL = str(CALIBRATION.relative_to(HERE))


def ship_weights(args: argparse.Namespace) -> None:
    payload = checkpoint.compact(checkpoint.load(args.checkpoint))
    target = HERE / f"{args.key}.pt"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / target.name
        torch.save(payload, staged)
        model, payload = checkpoint.build_from_checkpoint(staged)  # what users will load, FP16 and all
        info = payload["metadata"]["dataset"]
        dataset = parse_spec(args.data, "val")
        metrics = evaluate(TorchPredictor(model, info["mean"], info["std"]), dataset, info["classes"],
                           dataset.info.ignore_index, progress=True).metrics
        with atomic_path(target, overwrite=args.force) as out:
            shutil.copyfile(staged, out)
    entry = {"key": args.key, "model": payload["model"], "options": _identity(payload["options"]),
             "file": target.name, "sha256": sha256_file(target), "card": f"{args.key}.md",
             "dataset": args.dataset_name, "miou": round(metrics.miou, 5),
             "per_class_iou": {c: None if v is None else round(v, 5) for c, v in metrics.per_class_iou.items()},
             "calibration": CALIBRATION_REL}
    card = _card(entry, payload, metrics, model, args)
    with atomic_path(HERE / entry["card"], overwrite=args.force) as out:
        out.write_text(card)
    _update_index(entry)
    print(f"shipped {target} ({target.stat().st_size / 2**20:.1f} MiB), {100 * metrics.miou:.2f}% mIoU on "
          f"{args.data}; card {HERE / entry['card']}")


def _identity(options: dict) -> dict:
    """The options that tell variants apart in `edgeseg build --model NAME --backbone B`."""
    return {k: v for k, v in options.items() if k == "backbone"}


def _update_index(entry: dict) -> None:
    index = json.loads(INDEX.read_text()) if INDEX.is_file() else {"schema_version": 1, "weights": []}
    index["weights"] = [e for e in index["weights"] if e["key"] != entry["key"]] + [entry]
    index["weights"].sort(key=lambda e: e["key"])
    with atomic_path(INDEX, overwrite=True) as out:
        out.write_text(json.dumps(index, indent=1) + "\n")


def _card(entry: dict, payload: dict, metrics, model, args) -> str:
    meta = payload["metadata"]
    history = meta.get("history") or []
    seconds = sum(h.get("seconds", 0) for h in history)
    best = max(history, key=lambda h: h.get("val_miou", -1)) if history else {}
    params = sum(p.numel() for p in model.parameters())
    rows = "\n".join(f"| {c} | {'-' if v is None else f'{100 * v:.1f}'} |" for c, v in metrics.per_class_iou.items())
    curve = " · ".join(f"{h['epoch']}: {100 * h['val_miou']:.1f}" for h in history
                       if h["epoch"] % 5 == 0 or h["epoch"] in (1, len(history)))
    backbone = payload["options"].get("backbone")
    return f"""# {entry['key']}

{payload['model']}{f' with a {backbone} backbone' if backbone else ''}, trained from scratch on {args.dataset_name}
({len(payload['metadata']['dataset']['classes'])} classes, void ignored). Shipped with edgeseg: `edgeseg build
--model {payload['model']}` uses it when no `--checkpoint` is given, and `--precision int8` calibrates it
on the {args.dataset_name} train frames in `{CALIBRATION_REL}/`.

| | |
| --- | --- |
| val mIoU | **{100 * metrics.miou:.2f}%** ({args.data}, full 360x480, single scale, these FP16 weights) |
| val mAcc / pixel accuracy | {100 * metrics.macc:.2f}% / {100 * metrics.pixel_acc:.2f}% |
| parameters | {params / 1e6:.2f} M, stored in FP16 ({Path(HERE / entry['file']).stat().st_size / 2**20:.1f} MiB) |
| training | {len(history)} epochs, {seconds / 60:.0f} min of epochs; best at epoch {best.get('epoch', '?')} |
| trained on | {args.machine or cpu_info().get('model', 'unknown CPU')}, torch {torch.__version__} |
| sha256 | `{entry['sha256']}` |
| shipped | {dt.date.today().isoformat()} |

{args.note + chr(10) + chr(10) if args.note else ''}Recipe (the command the run recorded; `--resume` continues a run across sessions):

```
{args.recipe or _recipe(meta.get('command', '(not recorded)'))}
```

Validation mIoU (%) by epoch: {curve or '(no history)'}

Per-class IoU on val (%):

| class | IoU |
| --- | --- |
{rows}

Evaluate these weights yourself (the shipped file is an ordinary edgeseg checkpoint):

```
edgeseg eval --checkpoint {payload['model']} --data camvid:PATH:val
```
"""


def _recipe(command: str) -> str:
    """The recorded command as a user types it: `edgeseg train ...`, not the interpreter's path to it."""
    import shlex

    words = shlex.split(command)
    if words and Path(words[0]).name == "edgeseg":
        words[0] = "edgeseg"
    return shlex.join(words)


def ship_calibration(args: argparse.Namespace) -> None:
    dataset = parse_spec(args.data, "train")
    pairs = getattr(dataset, "pairs", None)
    if dataset.split != "train" or pairs is None:
        sys.exit("calibration frames come from a file-backed train split (never val or test)")
    if CALIBRATION.exists() and not args.force:
        sys.exit(f"{CALIBRATION} exists; pass --force to replace it")
    picks = sorted({round(i * (len(pairs) - 1) / max(args.count - 1, 1)) for i in range(args.count)})
    CALIBRATION.mkdir(parents=True, exist_ok=True)
    for old in CALIBRATION.glob("*.jpg"):
        old.unlink()
    lines = []
    for i in picks:
        image = Path(pairs[i][0])
        shutil.copyfile(image, CALIBRATION / image.name)
        lines.append(f"{image.name}  {sha256_file(image)}")
    (CALIBRATION / "SOURCES.txt").write_text(
        f"{len(lines)} frames of the {dataset.info.name} train split ({args.data}), every "
        f"{len(pairs) / len(lines):.1f}th by name, bytes unchanged; name and sha256:\n" + "\n".join(lines) + "\n")
    print(f"copied {len(lines)} train frames to {CALIBRATION}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    p = sub.add_parser("weights")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--key", required=True, help="e.g. deeplabv3plus-mobilenetv2-camvid")
    p.add_argument("--data", required=True, help="the val split the card reports, e.g. camvid:PATH:val")
    p.add_argument("--dataset-name", default="CamVid")
    p.add_argument("--recipe", help="the training command, when the run's own record is not the one to show")
    p.add_argument("--machine", help="where it trained (default: this CPU)")
    p.add_argument("--note", help="a paragraph for the card, e.g. that these are interim weights of a longer run")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=ship_weights)
    p = sub.add_parser("calibration")
    p.add_argument("--data", required=True, help="a train split, e.g. camvid:PATH:train")
    p.add_argument("--count", type=int, default=48)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=ship_calibration)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
