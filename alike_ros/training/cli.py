"""`python -m alike_ros train`: train, resume, validate or export the weights of a model (ALIKE, sift-residual)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
import yaml

from ..model.weights import WeightsError
from .tasks import task_for
from .train_config import TrainConfig, from_dict
from .trainer import CheckpointError, export, train, validate_real


def load_config(path: str | None) -> TrainConfig:
    """TrainConfig from a YAML file (missing keys keep their defaults)."""
    if not path:
        return TrainConfig()
    return from_dict(TrainConfig, read_settings(path))


def read_settings(path: str | Path) -> dict:
    """A YAML file's settings; `base: OTHER.yaml` (relative to the file) starts from that file's settings, so a
    variant states only what it changes. Nested sections merge key by key."""
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    base = values.pop("base", None)
    return merged(read_settings(Path(path).parent / base), values) if base else values


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m alike_ros train", description=__doc__)
    p.add_argument("--config", help="training YAML (alike_ros/training/configs/alike-t.yaml)")
    p.add_argument("--resume", action="store_true", help="continue out_dir/last.pt")
    p.add_argument("--init", metavar="WEIGHTS", help="start from a weights file exported by --export (fresh optimizer)")
    p.add_argument("--steps", type=int, help="override the number of optimizer steps")
    p.add_argument("--out-dir", help="override out_dir")
    p.add_argument("--export", metavar="CKPT", help="write a small weights file from a checkpoint")
    p.add_argument("--out", help="with --export: the weights file to write")
    p.add_argument("--note", default="", help="with --export: a note stored in the weights file")
    p.add_argument("--validate", metavar="CKPT", help="print validation metrics of a checkpoint")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (CheckpointError, WeightsError) as exc:  # damaged, foreign or old-format files: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.export:
        if not args.out:
            cli.error("--export needs --out")
        small = export(args.export, args.out, args.note)
        print(f"wrote {args.out}: {small['model']} step {small['step']} ({Path(args.out).stat().st_size} bytes)")
        return 0
    cfg = load_config(args.config)
    if args.steps is not None:
        cfg.steps = args.steps
    if args.out_dir:
        cfg.out_dir = args.out_dir
    if args.validate:
        from .data import PairDataset, load_photos
        from .real_pairs import RealData

        torch.set_num_threads(cfg.threads)
        task = task_for(cfg.model)
        net = task.load(args.validate, cfg)
        _, val_photos = load_photos(cfg.data)
        val_set = PairDataset(val_photos, cfg.data, cfg.seed + 1)
        metrics = task.validate(net, [val_set[i] for i in range(cfg.data.val_pairs)], cfg)
        if cfg.real.val_scenes:  # the held-out real pairs only: no training scene is loaded
            real = RealData.load(dataclasses.replace(cfg.real, share=0.0))
            metrics.update(validate_real(net, real.val, cfg))
        print(json.dumps(metrics, indent=2))
        return 0
    if args.init and args.resume:
        cli.error("--init starts a new run; --resume continues one: choose one")
    last = train(cfg, resume=args.resume, init=args.init)
    print(f"checkpoint: {last}")
    return 0
