"""`python -m alike_ros train`: train, resume, validate or export ALIKE weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from .trainer import TrainConfig, export, from_dict, train, validate


def load_config(path: str | None) -> TrainConfig:
    """TrainConfig from a YAML file (missing keys keep their defaults)."""
    if not path:
        return TrainConfig()
    with open(path) as f:
        return from_dict(TrainConfig, yaml.safe_load(f) or {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alike_ros train", description=__doc__)
    parser.add_argument("--config", help="training YAML (config/train_alike-t.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue out_dir/last.pt")
    parser.add_argument(
        "--init", metavar="WEIGHTS", help="start from a weights file exported by --export (fresh optimizer)"
    )
    parser.add_argument("--steps", type=int, help="override the number of optimizer steps")
    parser.add_argument("--out-dir", help="override out_dir")
    parser.add_argument("--export", metavar="CKPT", help="write a small weights file from a checkpoint")
    parser.add_argument("--out", help="with --export: the weights file to write")
    parser.add_argument("--note", default="", help="with --export: a note stored in the weights file")
    parser.add_argument("--validate", metavar="CKPT", help="print validation metrics of a checkpoint")
    args = parser.parse_args(argv)
    if args.export:
        if not args.out:
            parser.error("--export needs --out")
        small = export(args.export, args.out, args.note)
        print(f"wrote {args.out}: {small['model']} step {small['step']} ({Path(args.out).stat().st_size} bytes)")
        return 0
    cfg = load_config(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.out_dir:
        cfg.out_dir = args.out_dir
    if args.validate:
        from ..model.weights import load_model
        from .data import PairDataset, load_photos

        torch.set_num_threads(cfg.threads)
        net = load_model(cfg.model, args.validate)
        _, val_photos = load_photos(cfg.data)
        val_set = PairDataset(val_photos, cfg.data, cfg.seed + 1)
        metrics = validate(net, [val_set[i] for i in range(cfg.data.val_pairs)], cfg)
        print(json.dumps(metrics, indent=2))
        return 0
    if args.init and args.resume:
        parser.error("--init starts a new run; --resume continues one: choose one")
    last = train(cfg, resume=args.resume, init=args.init)
    print(f"checkpoint: {last}")
    return 0
