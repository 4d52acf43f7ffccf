"""The training loop: from-scratch ALNet, Adam with warm-up, gradient accumulation, validation, checkpoints, logs."""

from __future__ import annotations

import csv
import dataclasses
import math
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..detection.dkd import DetectorConfig, describe_dense, detect
from ..model.alnet import ALNet
from ..model.weights import WeightsError, safe_load
from .alike import AlikeTask
from .data import PairDataset, collate, load_photos
from .losses import mutual_matches
from .pair_geometry import DepthPair
from .real_pairs import MixedPairs, RealData, RealPairDataset
from .strecha import epipolar_distance, skew
from .tasks import Task, task_for
from .train_config import TrainConfig


def learning_rate(cfg: TrainConfig, step: int, start: int = 0) -> float:
    """Linear warm-up from `start` (where the optimizer began), then cosine decay to `final_lr_ratio` at
    `cfg.steps`: a run started with --init at step N has its whole schedule over steps N..cfg.steps."""
    if step - start < cfg.warmup_steps:
        return cfg.lr * (step - start + 1) / cfg.warmup_steps
    decay_start = start + cfg.warmup_steps
    progress = (step - decay_start) / max(1, cfg.steps - decay_start)
    return cfg.lr * (cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def validate_real(net: ALNet, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig) -> dict[str, float]:
    """Inference-path metrics on held-out real pairs (whole views, `real.val_top_k` keypoints): mutual-NN matches per
    pair; their precision against the cameras' epipolar geometry (within `val_epipolar_px` of the line: blind along
    it) and, for matches whose ground truth the depth maps know, within `val_gt_px` of it; and the AUC at 10 degrees
    of the relative pose estimated from the matches (the figure the real-geometry benchmark reports)."""
    if not pairs:
        return {}
    was_training = net.training
    net.eval()
    real = cfg.real
    det = DetectorConfig.strongest(real.val_top_k)
    rows = []
    for pair in pairs:
        scores, descs = net.dense_maps(torch.stack((pair["image0"], pair["image1"])))
        (k0, _), (k1, _) = detect(scores[0, 0], det), detect(scores[1, 0], det)
        i, j = mutual_matches(-(describe_dense(descs[0], k0) @ describe_dense(descs[1], k1).T))
        x0, x1 = k0[i].double().numpy(), k1[j].double().numpy()
        k0_cam, k1_cam = pair["K0"].double().numpy(), pair["K1"].double().numpy()
        r, t = pair["R01"].double().numpy(), pair["t01"].double().numpy()
        f = np.linalg.inv(k1_cam).T @ skew(t) @ r @ np.linalg.inv(k0_cam)
        epipolar = epipolar_distance(f, x0, x1) < real.val_epipolar_px
        gt, known = DepthPair(*(pair[k] for k in ("K0", "K1", "R01", "t01", "depth0", "depth1"))).to_other(k0[i], 0)
        close = (gt - k1[j]).norm(dim=1) < real.val_gt_px
        rows.append(
            {
                "real_matches": float(len(i)),
                "real_epi_precision": float(epipolar.mean()) if len(i) else 0.0,
                "real_epi_correct": float(epipolar.sum()),
                "real_gt_precision": float(close[known].float().mean()) if known.any() else 0.0,
                "real_pose_auc10": max(0.0, 1.0 - pose_error_deg(x0, x1, k0_cam, k1_cam, r, t) / 10.0),
            }
        )
    net.train(was_training)
    return {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}


def pose_error_deg(
    x0: np.ndarray, x1: np.ndarray, k0: np.ndarray, k1: np.ndarray, r: np.ndarray, t: np.ndarray
) -> float:
    """max(rotation error, angle between translation directions) of the essential matrix estimated from matched
    pixels (RANSAC, 1 px at the mean focal length), against the true (r, t); 180 when it fails."""
    if len(x0) < 5:
        return 180.0
    n0 = cv2.undistortPoints(x0.reshape(-1, 1, 2), k0, None).reshape(-1, 2)
    n1 = cv2.undistortPoints(x1.reshape(-1, 1, 2), k1, None).reshape(-1, 2)
    focal = (k0[0, 0] + k0[1, 1] + k1[0, 0] + k1[1, 1]) / 4
    cv2.setRNGSeed(0)  # RANSAC's samples: the same matches give the same figure at every validation
    e, inliers = cv2.findEssentialMat(n0, n1, np.eye(3), cv2.RANSAC, 0.9999, 1.0 / focal)
    if e is None or e.shape != (3, 3):
        return 180.0
    _, r_est, t_est, _ = cv2.recoverPose(e, n0, n1, np.eye(3), mask=inliers)
    rot = np.degrees(np.arccos(np.clip((np.trace(r_est @ r.T) - 1) / 2, -1, 1)))
    cos_t = abs(float(t_est.ravel() @ t)) / max(np.linalg.norm(t) * np.linalg.norm(t_est), 1e-12)
    return float(max(rot, np.degrees(np.arccos(min(1.0, cos_t)))))


def append_csv(path: Path, row: dict[str, float]) -> None:
    """Append a row; a new file takes the row's keys as its columns, an existing one keeps its own (a resumed
    run's log stays one table)."""
    new = not path.exists()
    if new:
        fields = list(row)
    else:
        with path.open(newline="") as f:
            fields = next(csv.reader(f))
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


NOT_LOSSES = {"step", "elapsed_s", "step_time_s", "lr", "matches"}


def plot_curves(out_dir: Path) -> None:
    """losses.png: training losses (left) and validation metrics (right) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = _read_csv(out_dir / "train.csv")
    val = _read_csv(out_dir / "val.csv")
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for key, values in train.items():  # every loss the task logs (those with weight 0 are empty)
        if key not in NOT_LOSSES and np.isfinite(values).any():
            ax0.plot(train["step"], values, label=key)
    ax0.set(xlabel="step", ylabel="loss", title="training losses", yscale="log")
    if ax0.lines:
        ax0.legend()
    if val:
        # each task logs some of these (ALIKE: the first two, and the real ones; sift-residual and keynet: with plain
        # SIFT's beside)
        labels = {
            "repeatability": "repeatability",
            "match_precision": "MNN precision",
            "sift_repeatability": "SIFT repeatability",
            "sift_match_precision": "SIFT MNN precision",
            # held-out real pairs, when the config names them (validate_real)
            "real_epi_precision": "real: epipolar precision",
            "real_gt_precision": "real: precision (depth)",
            "real_pose_auc10": "real: pose AUC@10",
        }
        for key, label in labels.items():
            if np.isfinite(val.get(key, [np.nan])).any():
                ax1.plot(val["step"], val[key], label=label, linestyle=":" if key.startswith("sift") else "-")
        ax1b = ax1.twinx()
        ax1b.plot(val["step"], val["correct_matches"], "k--", label="correct matches / pair")
        ax1b.set_ylabel("correct matches / pair")
        ax1b.legend(loc="lower right")
    ax1.set(xlabel="step", ylabel="fraction", title="validation (held-out pairs)", ylim=(0, 1))
    ax1.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out_dir / "losses.png", dpi=80)
    plt.close(fig)


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k] or "nan") for r in rows]) for k in rows[0]}  # empty: a loss not computed


CHECKPOINT_FORMAT = 2  # 2: only tensors and plain data, loadable with weights_only=True (1: before the field)


class CheckpointError(ValueError):
    """A training checkpoint that is missing, unreadable, unsafe to load, or not in this version's format."""


def save_checkpoint(path: Path, net: ALNet, opt: torch.optim.Optimizer, cfg: TrainConfig, state: dict) -> None:
    """Write atomically, so an interruption mid-write never destroys the previous checkpoint.

    Everything in it is tensors, dicts, lists, tuples, numbers, strings or None (the config as a dict, the RNG
    state as a tensor), so `load_checkpoint` reads it with torch.load(weights_only=True)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "state_dict": net.state_dict(),
            "model": cfg.model,
            "step": int(state["step"]),
            "optimizer": opt.state_dict(),
            "config": dataclasses.asdict(cfg),
            "elapsed_s": float(state["elapsed_s"]),
            "best": float(state["best"]),
            "start": int(state["start"]),
            "torch_rng": torch.get_rng_state(),
        },
        tmp,
    )
    tmp.replace(path)


# what each use of a checkpoint reads, and the types it must have
_EXPORT_FIELDS = {"state_dict": dict, "model": str, "step": int}
_RESUME_FIELDS = {
    **_EXPORT_FIELDS,
    "format": int,
    "optimizer": dict,
    "config": dict,
    "elapsed_s": (int, float),
    "best": (int, float),
    "start": int,
    "torch_rng": torch.Tensor,
}


def load_checkpoint(path: str | Path, for_resume: bool = True) -> dict:
    """A training checkpoint read safely (weights_only=True: a file holding any other Python object is refused,
    as unpickling it could run arbitrary code), with the fields resuming (or, `for_resume=False`, exporting)
    needs; a CheckpointError in one line otherwise."""
    path = Path(path)
    try:
        ckpt = safe_load(path, "training checkpoint")
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    weights = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path} is not a training checkpoint of alike_ros (no state_dict of tensors)")
    if for_resume and ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a training checkpoint of format {ckpt.get('format', 1)}, this version resumes format "
            f"{CHECKPOINT_FORMAT} only: export its weights (--export) and start a new run from them (--init)"
        )
    fields = _RESUME_FIELDS if for_resume else _EXPORT_FIELDS
    wrong = [k for k, kind in fields.items() if not isinstance(ckpt.get(k), kind) or isinstance(ckpt.get(k), bool)]
    if wrong:
        raise CheckpointError(f"{path} is not a complete training checkpoint (missing or wrong: {', '.join(wrong)})")
    return ckpt


def initial_state(path: str | Path, model: str) -> tuple[dict[str, torch.Tensor], int]:
    """State dict and step of a weights file this project exported (`export`), to continue training from.

    Plain state dicts (the upstream checkpoints' format) are refused: our weights are trained from scratch."""
    try:
        small = safe_load(path, "weights file")
    except WeightsError as exc:
        raise CheckpointError(str(exc)) from None
    if not (isinstance(small, dict) and {"state_dict", "model", "step"} <= set(small)):
        raise ValueError(f"{path} is not a weights file exported by `alike_ros train --export`")
    if small["model"] != model:
        raise ValueError(f"{path} holds {small['model']} weights, the config trains {model}")
    return small["state_dict"], int(small["step"])


def train(cfg: TrainConfig, resume: bool = False, init: str | Path | None = None) -> Path:
    """Train from scratch, from an exported weights file (`init`, else the config's `init`, with a fresh optimizer
    and warm-up) or resume `out_dir/last.pt`; returns the path of the last checkpoint."""
    torch.set_num_threads(cfg.threads)
    cv2.setNumThreads(cfg.threads)  # the data (warps, and the real pairs' one-time depth maps) keeps to the budget
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    torch.backends.mkldnn.enabled = cfg.mkldnn
    task = task_for(cfg.model)
    net = task.build(cfg)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    state = {"step": 0, "elapsed_s": 0.0, "best": -1.0, "start": 0}
    if resume:
        if not last.exists():
            raise CheckpointError(f"nothing to resume: {last} does not exist")
        ckpt = load_checkpoint(last)
        if ckpt["model"] != cfg.model:
            raise CheckpointError(f"{last} holds a {ckpt['model']} run, the config trains {cfg.model}")
        net.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = {k: ckpt[k] for k in state}
    elif last.exists():
        raise FileExistsError(f"{last} exists: pass --resume to continue it, or choose another out_dir")
    elif init or cfg.init:
        weights, step = initial_state(init or cfg.init, cfg.model)
        net.load_state_dict(weights)
        state.update(step=step, start=step)  # Adam's moments start empty: warm up again
    train_photos, val_photos = load_photos(cfg.data)
    data = PairDataset(train_photos, cfg.data, cfg.seed)
    val_set = PairDataset(val_photos, cfg.data, cfg.seed + 1)
    val_pairs = [val_set[i] for i in range(cfg.data.val_pairs)]
    data, real_val_pairs = with_real_pairs(data, cfg, task)
    if not resume and hasattr(task, "prepare"):  # a task's own set-up of a new run's network (e.g. mdnet's)
        task.prepare(net, data, cfg)
    training_mode(net, cfg)

    # SIGTERM (e.g. `kill PID`) ends the run like Ctrl-C: with a checkpoint; so does SIGINT (`kill -INT PID`) for a
    # run started in the background, which a shell starts with SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic() - state["elapsed_s"]
    last_save = time.monotonic()
    window: list[dict[str, float]] = []
    bar = tqdm(total=cfg.steps, initial=state["step"], desc=cfg.model, mininterval=20.0, dynamic_ncols=True)
    try:
        while state["step"] < cfg.steps:
            step = state["step"]
            t0 = time.monotonic()
            lr = learning_rate(cfg, step, state["start"])
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            sums: dict[str, float] = {}
            for micro in range(cfg.accumulate):
                first = (step * cfg.accumulate + micro) * cfg.batch_size
                losses = task.losses(net, collate([data[first + j] for j in range(cfg.batch_size)]), cfg)
                if not torch.isfinite(losses["total"]):
                    raise FloatingPointError(
                        f"non-finite loss at step {step}: { {k: v.item() for k, v in losses.items()} }"
                    )
                if losses["total"].requires_grad:  # else the batch gave no signal (e.g. no keypoint in view)
                    (losses["total"] / cfg.accumulate).backward()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v.item() / cfg.accumulate
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            state["step"] = step + 1
            state["elapsed_s"] = time.monotonic() - started
            window.append({**sums, "step_time_s": time.monotonic() - t0, "lr": lr})
            bar.update(1)
            bar.set_postfix({k: f"{sums[k]:.3g}" for k in ("total", "ds", "matches") if k in sums})
            if state["step"] % cfg.log_every == 0:
                row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                append_csv(out / "train.csv", {"step": state["step"], "elapsed_s": state["elapsed_s"], **row})
                window.clear()
            if state["step"] % cfg.val_every == 0 or state["step"] == cfg.steps:
                metrics = {**task.validate(net, val_pairs, cfg), **validate_real(net, real_val_pairs, cfg)}
                training_mode(net, cfg)  # validation leaves every module in training mode
                append_csv(out / "val.csv", {"step": state["step"], "elapsed_s": state["elapsed_s"], **metrics})
                bar.write(f"step {state['step']}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
                plot_curves(out)
                if metrics[cfg.best_metric] > state["best"]:
                    state["best"] = metrics[cfg.best_metric]
                    save_checkpoint(out / "best.pt", net, opt, cfg, state)
                save_checkpoint(last, net, opt, cfg, state)
                last_save = time.monotonic()
            elif time.monotonic() - last_save > cfg.checkpoint_seconds:
                save_checkpoint(last, net, opt, cfg, state)
                last_save = time.monotonic()
    except KeyboardInterrupt:
        bar.write(f"interrupted at step {state['step']}; saving {last}")
    finally:
        bar.close()
    save_checkpoint(last, net, opt, cfg, state)
    return last


def training_mode(net: torch.nn.Module, cfg: TrainConfig) -> None:
    net.train()
    if cfg.freeze_batchnorm:
        for module in net.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def with_real_pairs(
    data: torch.utils.data.Dataset, cfg: TrainConfig, task: Task
) -> tuple[torch.utils.data.Dataset, list[dict[str, torch.Tensor]]]:
    """The training pairs with `real.share` of them real (Strecha), and the held-out real validation pairs; both
    unchanged / empty when the config names no real scenes."""
    if not (cfg.real.share or cfg.real.val_scenes):
        return data, []
    if not isinstance(task, AlikeTask):
        raise ValueError(f"real pairs (real.*) train and validate ALIKE models only, not {cfg.model}")
    real = RealData.load(cfg.real)
    if cfg.real.share:
        pairs = RealPairDataset(real.train, cfg.real, cfg.data.size, cfg.data.photometric, cfg.seed)
        data = MixedPairs(data, pairs, cfg.real.share, cfg.seed, cfg.batch_size)
    return data, real.val


def export(checkpoint: str | Path, out: str | Path, note: str = "") -> dict:
    """Write a small weights file {"state_dict", "model", "step", "note"} from a training checkpoint."""
    ckpt = load_checkpoint(checkpoint, for_resume=False)
    state = {k: v.contiguous() for k, v in ckpt["state_dict"].items()}  # channels-last training layout
    small = {"state_dict": state, "model": ckpt["model"], "step": ckpt["step"], "note": note}
    small.update(task_for(ckpt["model"]).export_fields(ckpt))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(small, out)
    return small
