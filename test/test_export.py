"""The exported ONNX graph, the onnxruntime runtime against the eager torch path, and the `runtime` setting."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from conftest import REFERENCE, require

from alike_ros import parameter_table
from alike_ros.cli import export as export_cli
from alike_ros.cli import extract
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.export import INPUT, OPSET, OUTPUTS, OnnxNetwork, export_onnx, runtime_problem
from alike_ros.extractor import Extractor
from alike_ros.model.sparse_head import SparseHeadALNet
from alike_ros.model.weights import load_model
from alike_ros.pipeline import REBUILD_SETTINGS, FramePipeline, PipelineConfig

CONFIG = Path(__file__).resolve().parents[1] / "config" / "extractor.yaml"
HAS_ONNX = importlib.util.find_spec("onnx") is not None  # the exporter needs it
HAS_ORT = HAS_ONNX and importlib.util.find_spec("onnxruntime") is not None
HAS_OPENVINO = HAS_ONNX and importlib.util.find_spec("openvino") is not None
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed (pip install onnx)")
needs_ort = pytest.mark.skipif(
    not HAS_ORT, reason="onnx or onnxruntime is not installed (pip install onnx onnxruntime)"
)
INSTALLED = {"onnxruntime": HAS_ORT, "openvino": HAS_OPENVINO}  # each graph runtime: whether it can run here
# every graph runtime, each test skipped with the reason where its package is missing
GRAPH_RUNTIMES = [
    pytest.param(runtime, marks=pytest.mark.skipif(not present, reason=f"onnx or {runtime} is not installed"))
    for runtime, present in INSTALLED.items()
]
REFERENCE_IMAGES = ("kitti_000100.png", "photo_valendas_640x480.png")


def nearest(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point of a, the distance to and index of its nearest point of b, in float64 (float32 cdist
    is off by ~1e-3 px at 600 px coordinates)."""
    dist = torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double())
    d, i = dist.min(dim=1)
    return d.numpy(), i.numpy()


def assert_same_features(ours, eager) -> None:
    """A graph runtime's features against the eager torch path's: every keypoint within 0.01 px both ways, the same
    scores, descriptor cosine >= 0.9999."""
    assert len(ours) > 0 and abs(len(ours) - len(eager)) <= max(1, len(eager) // 1000)
    d_eager, idx = nearest(eager.keypoints, ours.keypoints)
    d_ours, _ = nearest(ours.keypoints, eager.keypoints)
    found = d_eager < 0.01
    assert found.mean() >= 0.999, f"only {found.mean():.2%} of eager keypoints within 0.01 px"
    assert (d_ours < 0.01).mean() >= 0.999, "the graph runtime reports keypoints the eager path does not have"
    np.testing.assert_allclose(ours.scores[idx[found]], eager.scores[found], atol=1e-4)  # as test_exactness
    cosine = (ours.descriptors[idx[found]] * eager.descriptors[found]).sum(axis=1)
    assert cosine.min() >= 0.9999
    assert np.all(np.diff(ours.scores) <= 0)


@pytest.fixture(scope="module")
def alike_t_net(request) -> SparseHeadALNet:
    from alike_ros.model.weights import bundled_weights_path

    return SparseHeadALNet(load_model("alike-t", require(bundled_weights_path("alike-t")))).eval()


@pytest.fixture(scope="module")
def extractors() -> dict[str, Extractor]:
    """alike-t with the bundled weights in every installed runtime, top-k 1000 without threshold (as the benchmark)."""
    detector = DetectorConfig.strongest(1000)
    installed = ["torch", *(runtime for runtime, present in INSTALLED.items() if present)]
    return {runtime: Extractor("alike-t", None, "cpu", detector=detector, runtime=runtime) for runtime in installed}


def real_image(name: str, textured_image: np.ndarray) -> np.ndarray:
    if name == "textured":
        return textured_image
    return cv2.imread(str(require(REFERENCE / "images" / name)))


# ---- the graph


@needs_onnx
def test_the_graph_is_opset_17_with_dynamic_height_and_width(alike_t_net):
    import onnx

    model = onnx.load_from_string(export_onnx(alike_t_net))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET] == [17]

    def dims(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [i.name for i in model.graph.input] == [INPUT]
    assert dims(model.graph.input[0]) == [1, 3, "height", "width"]
    assert [o.name for o in model.graph.output] == list(OUTPUTS)
    shapes = {o.name: dims(o) for o in model.graph.output}
    assert shapes["scores"] == [1, 1, "height", "width"] and shapes["block1"] == [1, 8, "height", "width"]
    assert all(isinstance(d, str) for name in OUTPUTS for d in shapes[name][2:])  # no size baked in


@needs_ort
def test_one_graph_runs_two_sizes_like_the_torch_network(alike_t_net):
    session = OnnxNetwork(alike_t_net, torch.device("cpu"), threads=1)
    rng = torch.Generator().manual_seed(0)
    for h, w in ((64, 96), (160, 224)):
        image = torch.rand(1, 3, h, w, generator=rng)
        scores, branches = session(image)
        with torch.inference_mode():
            logits, eager = alike_t_net(image)
        assert scores.shape == (1, 1, h, w) and (branches.height, branches.width) == (h, w)
        assert [m.shape[2:] for m in branches.maps] == [m.shape[2:] for m in eager.maps]
        torch.testing.assert_close(scores, torch.sigmoid(logits), atol=1e-5, rtol=0)
        for ours, theirs in zip(branches.maps, eager.maps, strict=True):
            torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


# ---- each graph runtime against eager torch, after our own DKD and description


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
@pytest.mark.parametrize("name", ["textured", *REFERENCE_IMAGES])
def test_graph_runtimes_reproduce_the_torch_path_on_real_images(runtime, name, extractors, textured_image):
    image = real_image(name, textured_image)
    assert_same_features(extractors[runtime](image, "bgr"), extractors["torch"](image, "bgr"))


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
def test_one_exported_graph_serves_different_image_sizes(runtime, extractors, textured_image):
    extractor = extractors[runtime]
    graph = extractor.graph
    # 240 x 320 and 201 x 267 (padded to 224 x 288): two input sizes, one graph exported at construction
    for image in (textured_image, np.ascontiguousarray(textured_image[:201, :267])):
        ours = extractor(image)
        assert ours.image_size == image.shape
        assert_same_features(ours, extractors["torch"](image))
    assert extractor.graph is graph
    np.testing.assert_allclose(
        extractor.score_map(textured_image), extractors["torch"].score_map(textured_image), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("runtime", GRAPH_RUNTIMES)
@pytest.mark.parametrize("model", ["alike-s", "alike-n", "alike-l"])
def test_the_other_variants_export_too(runtime, model, upstream_weights, textured_image):
    """alike-l has the extra head layer: its score map comes from the aggregated features."""
    detector = DetectorConfig.strongest(300)
    runs = {
        name: Extractor(model, upstream_weights(model), "cpu", detector=detector, runtime=name)(textured_image)
        for name in ("torch", runtime)
    }
    assert_same_features(runs[runtime], runs["torch"])


@pytest.mark.skipif(not HAS_OPENVINO, reason="onnx or openvino is not installed")
def test_openvino_runs_float32_on_the_cpu_whatever_the_cpus_default(extractors):
    """OpenVINO's CPU plugin defaults to bfloat16 where the CPU has bfloat16 units (score logits off by ~0.1)."""
    import openvino

    assert extractors["openvino"].graph.precision == "f32"
    default = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    assert default.to_string() in ("f32", "bf16", "f16")  # what the plugin would have used: this CPU's
    assert runtime_problem("openvino", torch.device("cuda")) == (
        "runtime openvino runs the network on the CPU: use device cpu, not cuda"
    )
    assert runtime_problem("openvino", torch.device("cpu")) is None


# ---- the `runtime` setting: one declaration, the node parameter, the YAML file, extract, the bag tool


def test_runtime_is_declared_once_and_reaches_every_front_end(tmp_path):
    spec = parameter_table.BY_NAME["runtime"].spec
    assert (spec.default, spec.choices) == ("torch", ("torch", "onnxruntime", "openvino"))
    assert parameter_table.PIPELINE_FIELDS["runtime"] == "runtime" and PipelineConfig().runtime == "torch"
    assert "runtime" in REBUILD_SETTINGS and "runtime" in parameter_table.MODEL_KEYS  # a change builds a new extractor
    assert yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]["runtime"] == "torch"
    with pytest.raises(ValueError, match="runtime must be one of torch, onnxruntime, openvino"):
        parameter_table.validate({**parameter_table.DEFAULTS, "runtime": "tensorrt"})
    args = extract.parser().parse_args(["x.png", "--out", str(tmp_path), "--runtime", "onnxruntime"])
    assert args.runtime == "onnxruntime"
    option = next(a for a in extract.parser()._actions if "--runtime" in a.option_strings)
    assert tuple(option.choices) == ("torch", "onnxruntime", "openvino")
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    runtime: torch\n")
    assert parameter_table.Settings.from_params(parameter_table.read_params(params)).pipeline.runtime == "torch"
    with pytest.raises(ValueError, match="half precision needs runtime torch"):
        PipelineConfig(runtime="onnxruntime", half=True, device="cpu").validate()
    with pytest.raises(ValueError, match="fast=False needs runtime torch"):
        Extractor("alike-t", None, "cpu", fast=False, runtime="onnxruntime")


@needs_ort
def test_a_pipeline_built_from_the_node_parameters_runs_onnxruntime(tmp_path, textured_image):
    params = tmp_path / "p.yaml"
    params.write_text("/**:\n  ros__parameters:\n    runtime: onnxruntime\n    device: cpu\n    warmup_frames: 1\n")
    config = parameter_table.Settings.from_params(parameter_table.read_params(params)).pipeline
    pipeline = FramePipeline(config)
    assert pipeline.extractor.graph is not None and pipeline.extractor.graph.providers == ["CPUExecutionProvider"]
    assert len(pipeline(textured_image, "rgb", 1).tracked.features) > 0
    assert replace(config, runtime="torch").needs_rebuild(config) and not replace(config).needs_rebuild(config)


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_without_its_package_a_runtime_is_refused_with_the_reason(
    runtime, monkeypatch, tmp_path, textured_image, capsys
):
    monkeypatch.setitem(sys.modules, runtime, None)  # importing it now raises ImportError
    reason = f"runtime {runtime} needs the {runtime} package"
    with pytest.raises(ValueError, match=reason):
        parameter_table.validate({**parameter_table.DEFAULTS, "runtime": runtime, "device": "cpu"})
    with pytest.raises(ValueError, match=reason):
        Extractor("alike-t", None, "cpu", runtime=runtime)
    cv2.imwrite(str(tmp_path / "x.png"), textured_image)
    assert extract.main([str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--runtime", runtime]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err and f"pip install onnx {runtime}" in err
    assert not (tmp_path / "o").exists()


def test_without_onnx_export_is_refused_with_the_reason(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert export_cli.main([str(tmp_path / "x.onnx")]) == 2
    assert capsys.readouterr().err == (
        "error: exporting the ONNX graph needs the onnx package, which is not installed: pip install onnx\n"
    )
    with pytest.raises(ValueError, match="runtime onnxruntime needs the onnx (and onnxruntime )?package"):
        PipelineConfig(runtime="onnxruntime").validate()


@needs_ort
def test_extract_with_runtime_onnxruntime_writes_the_same_features(tmp_path, textured_image):
    cv2.imwrite(str(tmp_path / "x.png"), textured_image)
    for runtime in ("torch", "onnxruntime"):
        argv = [str(tmp_path / "x.png"), "--out", str(tmp_path / runtime), "--device", "cpu", "--runtime", runtime]
        assert extract.main([*argv, "--top-k", "500", "--score-threshold", "0.0"]) == 0
    eager, ours = (np.load(tmp_path / runtime / "x.npz") for runtime in ("torch", "onnxruntime"))
    assert_same_features(_Loaded(ours), _Loaded(eager))


class _Loaded:
    """An extract .npz with the attributes of Features."""

    def __init__(self, data):
        self.keypoints, self.scores, self.descriptors = data["keypoints"], data["scores"], data["descriptors"]

    def __len__(self) -> int:
        return len(self.keypoints)


# ---- the export command


@needs_onnx
def test_export_writes_a_valid_graph(tmp_path, capsys):
    import onnx

    out = tmp_path / "alike-t.onnx"
    assert export_cli.main(["--model", "alike-t", "--format", "onnx", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out)))
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"wrote {out} (") and "opset 17" in stdout and "branch4" in stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "tflite", "{tmp}/x.onnx"], "error: unknown format 'tflite': use onnx"),
        (["{tmp}/missing/x.onnx"], "error: cannot write {tmp}/missing/x.onnx: the folder {tmp}/missing does not exist"),
        (["{tmp}"], "error: {tmp} is a folder: give the file to write"),
        (["--weights", "{tmp}/none.pth", "{tmp}/x.onnx"], "error: weights file {tmp}/none.pth does not exist"),
        (
            ["--model", "keynet", "{tmp}/x.onnx"],
            "error: export writes the ALNet networks (alike-t, alike-s, alike-n, alike-l, mdnet); keynet runs in torch",
        ),
    ],
)
def test_export_usage_errors_are_one_line_exit_2(argv, message, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert export_cli.main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.err, captured.out) == (message.format(tmp=tmp_path) + "\n", "")
    assert not (tmp_path / "x.onnx").exists()


@needs_onnx
def test_export_to_an_unwritable_file_is_one_line_exit_2(capsys):
    target = Path("/dev/full")  # every write fails (ENOSPC), even for root, whom permissions do not stop
    if not target.exists():
        pytest.skip("/dev/full is Linux only")
    assert export_cli.main([str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write /dev/full: ") and err.count("\n") == 1
