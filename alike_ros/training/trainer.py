"""The training loop: from-scratch ALNet, Adam with warm-up, gradient accumulation, validation, checkpoints, logs."""

from __future__ import annotations

import csv
import dataclasses
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..detection.dkd import DetectorConfig, describe_dense, detect
from ..geometry import inside, warp_points
from ..model.alnet import MDNET_MODEL, ALNet, model_config
from ..model.keynet import MODEL_NAME as KEYNET_MODEL
from ..model.keynet import KeyNetConfig
from ..model.residual import MODEL_NAME as RESIDUAL_MODEL
from ..model.residual import ResidualConfig
from ..model.unsuperpoint import MODEL_NAME as UNSUPERPOINT_MODEL
from ..model.unsuperpoint import UnsuperPointConfig
from ..model.weights import WeightsError, load_model, safe_load
from .data import DataConfig, PairDataset, load_photos
from .detection import soft_detect
from .losses import LossConfig, mutual_matches, pair_losses
from .mdnet_losses import MdnetConfig
from .msip import MsipConfig
from .pair_geometry import DepthPair, geometry_of
from .real_pairs import MixedPairs, RealConfig, RealData, RealPairDataset
from .strecha import epipolar_distance, skew
from .unsuperpoint_losses import UnsuperPointLossConfig


@dataclass
class TrainConfig:
    model: str = "alike-t"
    out_dir: str = "runs/alike-t"
    seed: int = 0
    threads: int = 2
    # CPU speed: for alike-t's few channels, oneDNN convolutions in channels-last layout measured about 2x faster
    # than the default NCHW ones in training (forward + backward)
    channels_last: bool = True
    mkldnn: bool = True
    steps: int = 1000  # optimizer steps
    batch_size: int = 2  # pairs per forward pass
    accumulate: int = 2  # forward passes per optimizer step
    lr: float = 1e-3
    warmup_steps: int = 100
    final_lr_ratio: float = 0.1  # cosine decay after the warm-up, down to lr * this at the last step
    grad_clip: float = 1.0  # max gradient norm; early from-scratch steps can spike
    top_k: int = 400  # keypoints per image during training
    # soft DKD with the detector's own settings and defaults
    window_size: int = DetectorConfig.window_size
    temperature: float = DetectorConfig.temperature
    border: int = DetectorConfig.border
    log_every: int = 5
    val_every: int = 50
    checkpoint_seconds: float = 300.0
    val_top_k: int = 400
    val_match_px: float = 3.0  # a keypoint repeats / a match is correct within this many pixels
    # the validation metric whose highest value is kept as best.pt (any key of val.csv)
    best_metric: str = "correct_matches"
    # a weights file exported by `--export` that a new run starts from (fresh optimizer; --init overrides it)
    init: str = ""
    # BatchNorm normalises with its running statistics in training too, and keeps them: for fine-tuning, where
    # those of the initial weights (a whole run's) beat a 2-image batch's; they alone moved the real pose figure
    # (TRAINING.md, "Real viewpoint change")
    freeze_batchnorm: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    real: RealConfig = field(default_factory=RealConfig)  # real pairs (Strecha), for ALIKE runs only
    loss: LossConfig = field(default_factory=LossConfig)
    residual: ResidualConfig = field(default_factory=ResidualConfig)  # the network of sift-residual runs
    keynet: KeyNetConfig = field(default_factory=KeyNetConfig)  # the network of keynet runs
    msip: MsipConfig = field(default_factory=MsipConfig)  # the loss of keynet runs
    mdnet: MdnetConfig = field(default_factory=MdnetConfig)  # the losses of mdnet runs
    unsuperpoint: UnsuperPointConfig = field(default_factory=UnsuperPointConfig)  # the network of unsuperpoint runs
    unsuperpoint_loss: UnsuperPointLossConfig = field(default_factory=UnsuperPointLossConfig)


def from_dict(cls: type, values: dict) -> object:
    """Build a (nested) dataclass from a dict such as parsed YAML; unknown keys are errors, lists become tuples."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    kwargs = {}
    defaults = cls()
    for name, value in values.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current):
            value = from_dict(type(current), value or {})
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def learning_rate(cfg: TrainConfig, step: int, start: int = 0) -> float:
    """Linear warm-up from `start` (where the optimizer began), then cosine decay to `final_lr_ratio` at
    `cfg.steps`: a run started with --init at step N has its whole schedule over steps N..cfg.steps."""
    if step - start < cfg.warmup_steps:
        return cfg.lr * (step - start + 1) / cfg.warmup_steps
    decay_start = start + cfg.warmup_steps
    progress = (step - decay_start) / max(1, cfg.steps - decay_start)
    return cfg.lr * (cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_losses(net: ALNet, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Mean of every loss over the pairs of a batch (both views of all pairs in one forward pass); homography
    pairs and real pairs alike (`pair_geometry.geometry_of`)."""
    n = len(batch["image0"])
    images = torch.cat((batch["image0"], batch["image1"]))
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    scores, descs = net.dense_maps(images)
    per_pair = []
    for i in range(n):
        outs = [
            soft_detect(scores[j, 0], descs[j], cfg.top_k, cfg.window_size, cfg.temperature, cfg.border)
            for j in (i, i + n)
        ]
        maps = (scores[i, 0], scores[i + n, 0], descs[i], descs[i + n])
        per_pair.append(pair_losses(outs[0], outs[1], maps, geometry_of(batch, i), cfg.loss))
    return {k: torch.stack([p[k] for p in per_pair]).mean() for k in per_pair[0]}


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def pair_metrics(
    k0: torch.Tensor, f0: torch.Tensor, k1: torch.Tensor, f1: torch.Tensor, h01: torch.Tensor, size: int, px: float
) -> dict[str, float]:
    """Repeatability of two keypoint sets (both directions) and mutual-NN matching of their unit descriptors
    (precision and count of matches within `px` of the truth) on a size x size pair; and two signs of collapse:
    the descriptors' mean cosine (near 1: one shared direction) and their effective dimensions (few: a subspace)."""
    w01, w10 = warp_points(h01, k0), warp_points(torch.linalg.inv(h01), k1)
    vis0, vis1 = inside(w01, (size, size), margin=0.5), inside(w10, (size, size), margin=0.5)
    rep = []
    if vis0.any() and vis1.any():
        rep = [
            (torch.cdist(w01[vis0], k1).min(1).values < px).float().mean().item(),
            (torch.cdist(w10[vis1], k0).min(1).values < px).float().mean().item(),
        ]
    i, j = mutual_matches(-(f0 @ f1.T))
    correct = (w01[i] - k1[j]).norm(dim=1) < px
    return {
        "repeatability": float(np.mean(rep)) if rep else 0.0,
        "match_precision": correct.float().mean().item() if len(i) else 0.0,
        "correct_matches": float(correct.sum()),
        "descriptor_mean_cos": mean_cosine(torch.cat((f0, f1))) if len(f0) + len(f1) else 0.0,
        "descriptor_dims": effective_dimensions(torch.cat((f0, f1))) if len(f0) + len(f1) > 1 else 0.0,
    }


def mean_cosine(desc: torch.Tensor) -> float:
    """Mean cosine similarity of the rows of an N x D matrix to each other (self-pairs included)."""
    unit = torch.nn.functional.normalize(desc.detach(), dim=1)
    return float((unit.mean(0) ** 2).sum())


def effective_dimensions(desc: torch.Tensor) -> float:
    """The participation ratio (sum λ)² / sum λ² of the eigenvalues λ of the covariance of N x D descriptors: D when
    every direction varies equally, 1 when they vary along one line."""
    variances = torch.linalg.svdvals(desc.detach() - desc.detach().mean(0)) ** 2
    return float(variances.sum() ** 2 / (variances**2).sum().clamp_min(1e-12))


@torch.no_grad()
def validate(net: ALNet, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig) -> dict[str, float]:
    """Inference-path metrics on held-out pairs: repeatability, mutual-NN matching precision and count, and
    how many keypoints pass the default 0.2 threshold; plus the training losses (BatchNorm in eval mode)."""
    was_training = net.training
    net.eval()
    det = DetectorConfig.strongest(cfg.val_top_k)
    rows = []
    for pair in pairs:
        batch = collate([pair])
        scores, descs = net.dense_maps(torch.cat((batch["image0"], batch["image1"])))
        h01 = pair["H"]
        (k0, _), (k1, _) = detect(scores[0, 0], det), detect(scores[1, 0], det)
        f0, f1 = describe_dense(descs[0], k0), describe_dense(descs[1], k1)
        outs = [
            soft_detect(scores[j, 0], descs[j], cfg.top_k, cfg.window_size, cfg.temperature, cfg.border) for j in (0, 1)
        ]
        losses = pair_losses(outs[0], outs[1], (scores[0, 0], scores[1, 0], descs[0], descs[1]), h01, cfg.loss)
        rows.append(
            {
                **pair_metrics(k0, f0, k1, f1, h01, scores.shape[-1], cfg.val_match_px),
                "kp_above_0.2": _count_above(scores, 0.2),
                "val_loss": losses["total"].item(),
            }
        )
    net.train(was_training)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


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


def _count_above(scores: torch.Tensor, threshold: float) -> float:
    """Mean number of inference-mode keypoints (default NMS, threshold) per image of a 2 x 1 x H x W batch."""
    det = DetectorConfig(score_threshold=threshold, selection="top")
    return float(np.mean([len(detect(s[0], det)[0]) for s in scores]))


class Task(Protocol):
    """What one family of models brings to the training loop; everything else (data, schedule, checkpoints,
    logs, resume) is shared."""

    def build(self, cfg: TrainConfig) -> torch.nn.Module: ...

    def losses(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
        """Every loss of a batch, "total" the one to minimise."""

    def validate(
        self, net: torch.nn.Module, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig
    ) -> dict[str, float]:
        """Metrics on held-out pairs; "correct_matches" selects the best checkpoint."""

    def load(self, path: str | Path, cfg: TrainConfig) -> torch.nn.Module:
        """The network of a checkpoint or exported weights file, for --validate."""

    def export_fields(self, checkpoint: dict) -> dict:
        """Fields the exported weights file needs besides state_dict, model, step and note."""

    # Optional: prepare(net, data, cfg) sets up the network of a new run (not a resumed one) before its first step.


class AlikeTask:
    """ALNet with the ALIKE losses (the functions above)."""

    def build(self, cfg: TrainConfig) -> ALNet:
        return ALNet(model_config(cfg.model))

    losses = staticmethod(batch_losses)
    validate = staticmethod(validate)

    def load(self, path: str | Path, cfg: TrainConfig) -> ALNet:
        return load_model(cfg.model, path)

    def export_fields(self, checkpoint: dict) -> dict:
        return {}


def task_for(model: str) -> Task:
    from .keynet import KeyNetTask  # these modules build on this one
    from .mdnet import MdnetTask
    from .residual import ResidualTask
    from .unsuperpoint import UnsuperPointTask

    tasks = {
        RESIDUAL_MODEL: ResidualTask,
        KEYNET_MODEL: KeyNetTask,
        MDNET_MODEL: MdnetTask,
        UNSUPERPOINT_MODEL: UnsuperPointTask,
    }
    return tasks.get(model, AlikeTask)()


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
