"""Training `mdnet` (training.mdnet_losses): ALNet built, validated and loaded as ALIKE's, trained with MD-Net's
losses."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import warp_map
from ..model.alnet import MDNET_MODEL, ALNet
from .alike import AlikeTask, validate
from .data import PairDataset, collate
from .mdnet_losses import peaky_loss, similarity_loss, triplet_loss
from .metrics import mean_cosine
from .tasks import register
from .train_config import TrainConfig

CENTRE_PAIRS = 16  # training pairs whose first views estimate the shared descriptor direction


@torch.no_grad()
def project_out_shared_direction(net: ALNet, images: torch.Tensor) -> tuple[float, float]:
    """Remove from the raw descriptors of `images` (B x 3 x H x W) the direction they all share, the first right
    singular vector of the uncentred raw descriptors, by projecting it out of the head's descriptor rows: the same
    bias-free 1x1 convolution, so the network is unchanged in kind. Returns the mean cosine of the descriptors
    before and after."""
    was_training = net.training
    net.eval()  # BatchNorm's running statistics stay untouched
    _, raw = net(images)
    net.train(was_training)
    raw = raw.permute(0, 2, 3, 1).reshape(-1, raw.shape[1])
    shared = torch.linalg.svd(raw, full_matrices=False).Vh[0]
    projection = torch.eye(len(shared)) - torch.outer(shared, shared)
    rows = net.convhead2.weight[: len(shared), :, 0, 0]
    rows.copy_(projection @ rows)
    return mean_cosine(raw), mean_cosine(raw @ projection)


class MdnetTask(AlikeTask):
    """ALNet (built, validated and loaded as ALIKE's) trained with MD-Net's losses."""

    def losses(self, net, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, torch.Tensor]:
        n = len(batch["H"])
        images = torch.cat((batch["image0"], batch["image1"]))
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        scores, descs = net.dense_maps(images)
        md = cfg.mdnet
        parts = {"sim": [], "pk": [], "tr": []}
        for i in range(n):
            h01 = batch["H"][i]
            # maskK: the pixels of view K the other view sees
            for this, other, h, seen in (
                (i, i + n, h01, batch["mask0"][i]),
                (i + n, i, h01.inverse(), batch["mask1"][i]),
            ):
                warped = warp_map(scores[other], h)
                parts["sim"].append(similarity_loss(scores[this][None], warped[None], seen[None, None], md.patch))
                parts["tr"].append(triplet_loss(descs[this], descs[other], h, md, (scores[this, 0], scores[other, 0])))
            parts["pk"].append(peaky_loss(scores[[i, i + n]], md.patch))
        means = {k: torch.stack(v).mean() for k, v in parts.items()}
        total = md.w_similarity * means["sim"] + md.w_peaky * means["pk"] + md.w_triplet * means["tr"]
        return {"total": total, **{k: v.detach() for k, v in means.items()}}

    def prepare(self, net, data: PairDataset, cfg: TrainConfig) -> None:
        if cfg.mdnet.centre_init:
            images = torch.stack([data[i]["image0"] for i in range(CENTRE_PAIRS)])
            before, after = project_out_shared_direction(net, images)
            print(f"mdnet: shared descriptor direction projected out, mean cosine {before:.4f} -> {after:.4f}")

    @torch.no_grad()
    def validate(self, net, pairs: list[dict[str, torch.Tensor]], cfg: TrainConfig) -> dict[str, float]:
        """ALIKE's inference-path metrics, with MD-Net's losses (BatchNorm in eval mode) as the validation loss."""
        metrics = validate(net, pairs, cfg)
        was_training = net.training
        net.eval()
        torch_state = torch.get_rng_state()  # the same anchors at every validation, and training's draws untouched
        torch.manual_seed(cfg.seed + 1)
        metrics["val_loss"] = float(np.mean([self.losses(net, collate([p]), cfg)["total"].item() for p in pairs]))
        torch.set_rng_state(torch_state)
        net.train(was_training)
        return metrics


register(MdnetTask, MDNET_MODEL)
