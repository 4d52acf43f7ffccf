"""Where a network runs: the device by name, and the rules a device, a runtime and half precision must meet
together (one copy, for the extractor's constructor and the pipeline's settings, so the node can refuse a
parameter with the reason before it builds a model)."""

from __future__ import annotations

import torch

from .export import runtime_problem


def resolve_device(device: str) -> torch.device:
    """'auto' picks the first CUDA device when there is one; 'cuda[:N]' must exist."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"invalid device {device!r}: use auto, cpu, cuda or cuda:N") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return dev


def checked_device(device: str, runtime: str = "torch", half: bool = False, fast: bool = True) -> torch.device:
    """The device `device` names, once the network can run there as asked: `runtime`, `half` precision and
    (the extractor's option; the pipeline always runs the fast path) `fast`. ValueError with the reason of the
    first rule broken: the graph runtimes run the fast path in float32, each runtime has its own needs
    (`export.runtime_problem`), half precision needs CUDA."""
    dev = resolve_device(device)
    if runtime != "torch":
        if half:
            raise ValueError(f"half precision needs runtime torch (runtime {runtime} runs float32)")
        if not fast:
            raise ValueError(f"fast=False needs runtime torch (runtime {runtime} runs the fast path in float32)")
    if problem := runtime_problem(runtime, dev):
        raise ValueError(problem)
    if half and dev.type != "cuda":
        raise ValueError(f"half precision needs a CUDA device, device {device!r} is {dev.type}")
    return dev
