"""Key.Net's multi-scale index proposal loss (M-SIP), for one pair of views related by a homography.

For a window size N the response map is cut into N x N windows; in each, a spatial softmax (base e) of the
response gives a soft, differentiable keypoint position (the index proposal). The other view's response is
warped into this view, and in the same window its hard maximum is the target: the loss is the squared
distance between the two, weighted by the scores there (normalised over the windows, so no score level is
preferred), over the windows entirely inside the common area, in both directions. M-SIP sums it over
windows of 8, 16, 24, 32 and 40 px with weights 256, 64, 16, 4 and 1 (the paper's). A flat response cannot
satisfy it: its soft position is the window centre, while the target is wherever the other view peaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry import warp_map


@dataclass(frozen=True)
class MsipConfig:
    windows: tuple[int, ...] = (8, 16, 24, 32, 40)  # px
    weights: tuple[float, ...] = (256.0, 64.0, 16.0, 4.0, 1.0)  # smaller for larger windows, whose errors are larger

    def __post_init__(self):
        if len(self.windows) != len(self.weights):
            raise ValueError(f"msip: {len(self.windows)} windows but {len(self.weights)} weights")


def windows_of(values: torch.Tensor, n: int) -> torch.Tensor:
    """1 x H x W -> (H // n) x (W // n) x n*n: the map's whole n x n windows, row-major inside each."""
    _, height, width = values.shape
    rows, cols = height // n, width // n
    return values[0, : rows * n, : cols * n].reshape(rows, n, cols, n).permute(0, 2, 1, 3).reshape(rows, cols, n * n)


def ip_loss(logits: torch.Tensor, other_scores: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, n: int):
    """Index proposal loss of one view at window size n. logits/scores: this view's response (1 x H x W),
    other_scores: the other view's sigmoid scores warped here, valid: 1 x H x W where that warp is defined."""
    offsets = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="xy"), -1).reshape(-1, 2).float()
    soft = torch.softmax(windows_of(logits, n), -1) @ offsets  # rows x cols x 2, (x, y) inside the window
    target_scores = windows_of(other_scores.detach(), n)
    best = target_scores.argmax(-1)
    hard = offsets[best]
    whole = windows_of(valid.float(), n).amin(-1) > 0
    if not whole.any():
        return logits.new_zeros(())
    own = (torch.softmax(windows_of(logits, n), -1) * windows_of(scores, n)).sum(-1)  # expected own score
    alpha = (own + target_scores.gather(-1, best[..., None])[..., 0]).detach()[whole]
    alpha = alpha / alpha.mean().clamp_min(1e-6)
    return (alpha * ((soft - hard)[whole] ** 2).sum(-1)).mean()


def msip_loss(logits: torch.Tensor, h01: torch.Tensor, masks: tuple[torch.Tensor, torch.Tensor], cfg: MsipConfig):
    """M-SIP of one pair: logits is 2 x 1 x H x W (view 0, view 1), masks the views' common-area masks."""
    scores = torch.sigmoid(logits)
    h10 = torch.linalg.inv(h01)
    total = logits.new_zeros(())
    for this, other, h, mask in ((0, 1, h01, masks[0]), (1, 0, h10, masks[1])):
        warped = warp_map(scores[other], h)
        for n, weight in zip(cfg.windows, cfg.weights, strict=True):
            total = total + weight * ip_loss(logits[this], warped, scores[this], mask[None], n) / 2
    return total
