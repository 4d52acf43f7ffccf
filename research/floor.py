"""The compute floor: multiply-accumulates left in each path at 640x480, against this CPU's peak.

    python research/floor.py [--keypoints 1000] [--ghz 2.445] [--cores 2] [--macs-per-cycle 16]

Convolution MACs are counted with forward hooks on a real forward pass (C_in/groups x k^2 x C_out per
output pixel); the sparse head adds keypoints x 4 neighbours x (dim x dim) (plus dim x dim for alike-l's
extra head layer). The peak is cores x clock x FMA lanes per cycle (Zen 3: two 256-bit FMA units = 16
fp32 MACs per cycle per core). Elementwise work (ReLU, pools, upsampling) is not MACs and is left out, so
the floor it gives is a lower bound.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from alike_ros.model.alnet import MODEL_CONFIGS, ALNet
from alike_ros.model.sparse_head import SparseHeadALNet


def conv_macs(module: nn.Module, image: torch.Tensor) -> int:
    total = 0

    def hook(conv: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        k = conv.kernel_size[0] * conv.kernel_size[1]
        total += output.numel() * conv.in_channels // conv.groups * k

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        module(image)
    for h in handles:
        h.remove()
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keypoints", type=int, default=1000)
    p.add_argument("--ghz", type=float, default=2.445, help="clock from /proc/cpuinfo")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--macs-per-cycle", type=int, default=16, help="fp32 FMA lanes per cycle per core")
    args = p.parse_args()
    peak = args.cores * args.ghz * 1e9 * args.macs_per_cycle
    image = torch.rand(1, 3, 480, 640)
    print(f"peak {peak / 1e9:.0f} GMAC/s ({args.cores} cores x {args.ghz} GHz x {args.macs_per_cycle})")
    print("| model | port GMAC | fast GMAC | fast floor at peak (ms) |")
    print("|---|---|---|---|")
    for name, cfg in MODEL_CONFIGS.items():
        net = ALNet(cfg).eval()
        port = conv_macs(net, image)
        fast = conv_macs(SparseHeadALNet(net), image)
        head = cfg.dim * cfg.dim * (1 if cfg.single_head else 2)
        fast += args.keypoints * 4 * head
        print(f"| {name} | {port / 1e9:.3f} | {fast / 1e9:.3f} | {fast / peak * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
