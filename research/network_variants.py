"""Other ways to run the fast path's network, against the default eager one: oneDNN post-op fusion, TorchScript,
OpenVINO.

    python research/network_variants.py [--model alike-t] [--runs 30] [--threads 2] [--repeats 3]

The network alone (the branch maps and the score logits of `SparseHeadALNet`, BatchNorm folded,
channels-last) at 640x480:
- `eager`: what the extractor runs;
- `fused`: every conv+ReLU one oneDNN call with a ReLU post-op, and each ResBlock's conv2+shortcut add+ReLU one
  call with an add and a ReLU post-op (`torch.ops.mkldnn._convolution_pointwise`), so no separate ReLU or add pass
  over the maps; then the same score logits;
- `branches only`: the eager branches without the score logits (what the logits cost is the difference);
- `jit-frozen`: `torch.jit.trace` + `torch.jit.freeze`;
- `jit-optimized`: the same + `torch.jit.optimize_for_inference` (oneDNN blocked layouts, its own fusions);
- `torch bf16`: the same module and input in bfloat16 (oneDNN uses AMX or AVX512-BF16 where the CPU has them);
- `openvino f32` / `openvino bf16` (where openvino is installed): the exported graph compiled by OpenVINO for the
  CPU at that inference precision (`runtime: openvino` uses f32; bf16 is its CPU plugin's own default on CPUs with
  bfloat16 units), its score logits taken back from its sigmoid output.
Each variant's outputs are compared with eager's (largest absolute difference); timings are median / minimum ms
of `--runs` calls, the variants taking turns, `--repeats` times.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from alike_ros.export import GraphNetwork, OpenVinoNetwork, runtime_problem
from alike_ros.extractor import Extractor
from alike_ros.model.alnet import ALNet, ResBlock
from alike_ros.model.sparse_head import Branches, max_pool

POINTWISE = torch.ops.mkldnn._convolution_pointwise


def conv_relu(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    return POINTWISE(x, conv.weight, conv.bias, *args, "relu", [], "")


def res_block(x: torch.Tensor, block: ResBlock) -> torch.Tensor:
    out = conv_relu(x, block.conv1)
    conv = block.conv2
    args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    return POINTWISE.binary(out, block.downsample(x), conv.weight, conv.bias, *args, "add", None, "relu", [], "")


def fused_branches(net: ALNet) -> Callable[[torch.Tensor], Branches]:
    def branches(image: torch.Tensor) -> Branches:
        x1 = conv_relu(conv_relu(image, net.block1.conv1), net.block1.conv2)
        x2 = res_block(max_pool(x1, 2), net.block2)
        x3 = res_block(max_pool(x2, 4), net.block3)
        x4 = res_block(max_pool(x3, 4), net.block4)
        coarse = [conv_relu(x, c) for c, x in zip((net.conv2, net.conv3, net.conv4), (x2, x3, x4), strict=True)]
        return Branches(x1, coarse, image.shape[2], image.shape[3])

    return branches


class Outputs(nn.Module):
    """The sparse-head network with plain tensor outputs (what tracing needs)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, branches = self.net(image)
        return (logits, *branches.maps)


def graph_outputs(graph: GraphNetwork) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """A graph runtime's outputs as eager's: score logits (from the graph's sigmoid), then the branch maps."""

    def outputs(image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores, branches = graph(image.contiguous())
        return (torch.logit(scores.double()).float(), *branches.maps)

    return outputs


def timed(function: Callable, image: torch.Tensor, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        function(image)
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="alike-t")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    sparse = Extractor(args.model, None, "cpu").net
    image = torch.rand(1, 3, 480, 640).contiguous(memory_format=torch.channels_last)
    eager = Outputs(sparse).eval()
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(eager, image))
        optimized = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(eager, image)))
    fused = fused_branches(sparse.net)

    def fused_outputs(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        branches = fused(x)
        return (sparse.score_logits(branches), *branches.maps)

    variants = {
        "eager": eager,
        "fused": fused_outputs,
        "jit-frozen": frozen,
        "jit-optimized": optimized,
        "branches only": lambda x: sparse.branches(x).maps,
    }
    bf16 = Outputs(copy.deepcopy(sparse).to(torch.bfloat16)).eval()
    variants["torch bf16"] = lambda x: tuple(o.float() for o in bf16(x.to(torch.bfloat16)))
    if runtime_problem("openvino") is None:
        for precision in ("f32", "bf16"):
            variants[f"openvino {precision}"] = graph_outputs(OpenVinoNetwork(sparse, cpu, args.threads, precision))
    with torch.inference_mode():
        reference = variants["eager"](image)
        for name, function in variants.items():
            outputs = function(image)
            outputs = outputs if len(outputs) == len(reference) else (reference[0], *outputs)  # branches only
            diff = max(float((a - b).abs().max()) for a, b in zip(reference, outputs, strict=True))
            print(f"{name}: largest difference from eager {diff:.2g}")
            timed(function, image, 5)  # warm-up
        print(f"\n{args.model}, 640x480, {args.threads} threads, median / min ms of {args.runs} runs:")
        for repeat in range(args.repeats):
            cells = []
            for name, function in variants.items():
                samples = timed(function, image, args.runs)
                cells.append(f"{name} {statistics.median(samples):.1f} / {min(samples):.1f}")
            print(f"repeat {repeat + 1}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
