"""The network part as an ONNX graph, and running that graph with onnxruntime.

The graph is what our own DKD and sub-pixel description need, no more (the fast path's network, BatchNorm folded):

- input `image`: 1 x 3 x H x W float32, RGB in [0, 1], H and W multiples of 32 (the extractor pads the image at the
  bottom/right with zeros to get there); H and W are dynamic, one graph serves every size;
- output `scores`: 1 x 1 x H x W float32, the sigmoid score map (DKD runs on its top-left crop of the image's size);
- output `block1`: the first block's output, c1 channels at H x W (the fine branch's 1x1 conv and ReLU are applied
  only at the pixels described, so that branch is never stored);
- outputs `branch2` .. `branch4`: the coarse aggregation branches after their 1x1 conv and ReLU, dim/4 channels
  each, at 1/2, 1/8 and 1/32 of H x W. The descriptor at a sub-pixel keypoint is computed from these
  (`SparseHeadALNet.descriptors_at`: the fine branch at the keypoint's four integer neighbours, the coarse ones
  interpolated there, the head's descriptor rows applied, normalised, then bilinear between the four), exactly
  what the dense descriptor map would give there. A dense descriptor output (dim x H x W, and a full-resolution
  head convolution) would cost more than the whole rest of the network at 640x480, for the few thousand pixels
  that are ever read.
"""

from __future__ import annotations

import copy
import importlib
import io
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .model.sparse_head import Branches, SparseHeadALNet

FORMATS = ("onnx",)
OPSET = 17
INPUT = "image"
OUTPUTS = ("scores", "block1", "branch2", "branch3", "branch4")
EXAMPLE_SIZE = (64, 96)  # (height, width) traced; any multiple of 32 works after export


class NetworkGraph(nn.Module):
    """What the exported graph computes: the sigmoid score map and the fast path's `Branches`."""

    def __init__(self, net: SparseHeadALNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, branches = self.net(image)
        return (torch.sigmoid(logits), *branches.maps)


def export_onnx(net: SparseHeadALNet) -> bytes:
    """The ONNX graph (opset 17, dynamic height and width) of `net`'s network part, serialised; ValueError when
    the onnx package is missing.

    TorchScript-based export: it needs the onnx package only and writes opset 17 directly (the torch.export-based
    exporter also needs onnxscript and starts at opset 18)."""
    if problem := export_problem():
        raise ValueError(problem)
    graph = NetworkGraph(_cpu_float_copy(net)).eval()
    example = torch.zeros(1, 3, *EXAMPLE_SIZE)
    axes = {INPUT: {2: "height", 3: "width"}}
    for i, name in enumerate(OUTPUTS):
        axes[name] = {2: "height" if i < 2 else f"height_{name}", 3: "width" if i < 2 else f"width_{name}"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices; nothing the user can act on
        torch.onnx.export(
            graph,
            (example,),
            buffer,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def _cpu_float_copy(net: SparseHeadALNet) -> SparseHeadALNet:
    return copy.deepcopy(net).to("cpu", torch.float32, memory_format=torch.contiguous_format).eval()


def write_onnx(net: SparseHeadALNet, out: str | Path) -> int:
    """Export and write to `out`; the bytes written. OSError when `out` cannot be written (a file it created
    is removed)."""
    data = export_onnx(net)
    out = Path(out)
    existed = out.exists()
    try:
        out.write_bytes(data)
    except OSError:
        if not existed:  # a partial file of ours
            out.unlink(missing_ok=True)
        raise
    return len(data)


def _missing(*packages: str) -> list[str]:
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def export_problem() -> str | None:
    """Why the graph cannot be exported here (None when it can)."""
    if _missing("onnx"):
        return "exporting the ONNX graph needs the onnx package, which is not installed: pip install onnx"
    return None


def runtime_problem(runtime: str, device: torch.device | None = None) -> str | None:
    """Why `runtime` cannot run the network here, on `device` when given (None when it can). Every runtime but
    torch exports the graph (onnx), then runs it."""
    if runtime == "torch":
        return None
    if runtime not in GRAPH_RUNTIMES:
        return f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}"
    if missing := _missing("onnx", runtime):  # each graph runtime's package is named as the runtime
        gpu = " (onnxruntime-gpu for CUDA)" if runtime == "onnxruntime" else ""
        return (
            f"runtime {runtime} needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}, "
            f"not installed: pip install onnx {runtime}{gpu}, or use runtime torch"
        )
    if runtime == "openvino" and device is not None and device.type != "cpu":
        return f"runtime openvino runs the network on the CPU: use device cpu, not {device}"
    return None


class GraphNetwork:
    """The exported graph in another runtime: the network stage of the extractor's fast path. Input and outputs
    pass through host memory; `run` maps the input array to the outputs' arrays in `OUTPUTS` order."""

    def __init__(self, runtime: str, device: torch.device):
        if problem := runtime_problem(runtime, device):
            raise ValueError(problem)
        self.device = device

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, Branches]:
        """Sigmoid scores (1 x 1 x H x W) and the branches, as torch tensors on the extractor's device."""
        array = np.ascontiguousarray(image.detach().to("cpu", torch.float32).numpy())
        scores, fine, *coarse = (torch.from_numpy(o).to(self.device) for o in self.run(array))
        return scores, Branches(fine, coarse, array.shape[2], array.shape[3])


class OnnxNetwork(GraphNetwork):
    """The graph in an onnxruntime session: CPU execution provider, with as many threads as torch uses; on a CUDA
    device the CUDA provider when the installed onnxruntime has it (onnxruntime-gpu)."""

    def __init__(self, net: SparseHeadALNet, device: torch.device, threads: int | None = None):
        super().__init__("onnxruntime", device)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # idle pool threads spinning for work would take the cores our DKD and description run on next
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(export_onnx(net), options, providers=providers)
        self.providers = self.session.get_providers()

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUTS), {INPUT: array})


class OpenVinoNetwork(GraphNetwork):
    """The graph compiled by OpenVINO for the CPU, in float32, latency-first, with as many threads as torch uses.

    float32 is asked for explicitly: on CPUs with bfloat16 units (AVX512-BF16, AMX) OpenVINO's CPU plugin runs in
    bfloat16 unless told otherwise, which moves the score logits by about 0.1 (BENCHMARKS.md, Runtimes)."""

    def __init__(self, net: SparseHeadALNet, device: torch.device, threads: int | None = None, precision: str = "f32"):
        super().__init__("openvino", device)
        import openvino

        config = {
            "INFERENCE_PRECISION_HINT": precision,  # only f32 keeps the outputs those of torch (bf16: benchmarks)
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
        }
        core = openvino.Core()
        self.compiled = core.compile_model(core.read_model(export_onnx(net)), "CPU", config)
        self._requests = threading.local()  # an infer request serves one call at a time: one per thread (workers)
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        if not hasattr(self._requests, "request"):
            self._requests.request = self.compiled.create_infer_request()
        results = self._requests.request.infer({INPUT: array})  # copies of the outputs, not views of its buffers
        return [results[self.compiled.output(name)] for name in OUTPUTS]


GRAPH_RUNTIMES: dict[str, type[GraphNetwork]] = {"onnxruntime": OnnxNetwork, "openvino": OpenVinoNetwork}
RUNTIMES = ("torch", *GRAPH_RUNTIMES)
