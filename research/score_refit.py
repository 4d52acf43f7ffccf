"""Could alike-t's own features carry a calibrated score? (issue 14)

    python research/score_refit.py [--weights alike_ros/weights/alike-t.pth] [--pairs 200] --out W.pth
    ALIKE_ROS_SHARED=../shared python research/viewpoint_gap.py --weights W.pth --parts 3,4 --scales 1.0

ALNet's score is one more output row of its last 1x1 convolution (`convhead2`): a linear function, without bias,
of the same features the descriptor is made of, in upstream's network as in ours. This refits only that row, by
logistic regression, to the label the calibration loss uses (`training.losses.calibration_loss`): is the peak's
mutual nearest neighbour in the other view within 3 px of its true position. The fit uses training-style pairs
of the training photos (tilts to 40 degrees, crops of 320 px); the ranking quality (ROC AUC) of the old and the
refitted score is measured on pairs of the photos the trainer holds out. The refitted weights, written to
`--out`, are for `viewpoint_gap.py`: does a score that means "probability of a correct match" select as
upstream's does (part 4), and does its ranking change graf (part 3)?
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from alike_ros.detection.dkd import DetectorConfig, describe_dense, detect
from alike_ros.geometry import inside, warp_points
from alike_ros.model.alnet import ALNet
from alike_ros.model.weights import bundled_weights_path, load_model, safe_load
from alike_ros.training.data import DataConfig, PairDataset, WarpConfig, load_photos
from alike_ros.training.losses import LossConfig, matched_correctly

SIZE = 320
DATA = DataConfig(
    folder="../shared/data/photos/train", size=SIZE, cache_side=1024, crop_range=(0.3, 1.0), val_images=8,
    warp=WarpConfig(max_tilt_deg=40),
)  # fmt: skip


@torch.no_grad()
def peak_samples(net: ALNet, dataset: PairDataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Head-input features (N x dim) at the top-400 peaks of view 0 that view 1 sees, and whether each is matched
    correctly (N), over `count` pairs."""
    detector = DetectorConfig(top_k=400, score_threshold=0.0, max_keypoints=400)
    features, labels = [], []
    for index in range(count):
        pair = dataset[index]
        feats = net.features(torch.stack((pair["image0"], pair["image1"])))
        head = net.convhead2(feats)
        scores, descriptors = torch.sigmoid(head[:, -1]), F.normalize(head[:, :-1], dim=1)
        (k0, _), (k1, _) = detect(scores[0], detector), detect(scores[1], detector)
        truth = warp_points(pair["H"], k0)
        seen = inside(truth, (SIZE, SIZE), margin=0.5)
        d0, d1 = describe_dense(descriptors[0], k0), describe_dense(descriptors[1], k1)
        correct = matched_correctly(d0, d1, k1, truth, LossConfig().calibration_px)
        pixels = k0.round().long().clamp(0, SIZE - 1)
        features.append(feats[0][:, pixels[:, 1], pixels[:, 0]].T[seen])
        labels.append(correct[seen])
    return torch.cat(features), torch.cat(labels)


def roc_auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """Probability that a correctly matched peak outscores a wrongly matched one (ties count half)."""
    positive = labels.numpy() > 0
    ranks = rankdata(scores.numpy())
    n1, n0 = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, l2: float = 1e-4, start=None) -> torch.Tensor:
    """Bias-free logistic regression weights (the score row has no bias), by L-BFGS."""
    w = (start.clone() if start is not None else torch.zeros(features.shape[1])).requires_grad_(True)
    optimizer = torch.optim.LBFGS([w], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(features @ w, labels) + l2 * (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, default=bundled_weights_path("alike-t"))
    p.add_argument("--pairs", type=int, default=200, help="training pairs to fit on (held-out pairs: a quarter)")
    p.add_argument("--out", type=Path, required=True, help="where to write the weights with the refitted score")
    args = p.parse_args()
    torch.set_num_threads(2)
    net = load_model("alike-t", args.weights).eval()
    train, held_out = load_photos(DATA)
    x, y = peak_samples(net, PairDataset(train, DATA, seed=123), args.pairs)
    x_test, y_test = peak_samples(net, PairDataset(held_out, DATA, seed=321), args.pairs // 4)
    old = net.convhead2.weight[-1, :, 0, 0].detach()
    new = fit_logistic(x, y, start=old)
    print(f"{len(y)} training peaks ({y.mean():.1%} matched correctly), {len(y_test)} held-out ({y_test.mean():.1%})")
    for name, w in (("old score", old), ("refitted", new)):
        nll = F.binary_cross_entropy_with_logits(x_test @ w, y_test).item()
        print(f"{name}: held-out ROC AUC {roc_auc(y_test, x_test @ w):.3f}, as a probability NLL {nll:.3f}")
    checkpoint = safe_load(args.weights)
    state = dict(checkpoint["state_dict"])
    state["convhead2.weight"] = state["convhead2.weight"].clone()
    state["convhead2.weight"][-1, :, 0, 0] = new
    note = f"{checkpoint.get('note', '')}; score row refitted by research/score_refit.py (a probe, not for use)"
    torch.save({**checkpoint, "state_dict": state, "note": note}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
