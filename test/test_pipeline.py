"""The frame pipeline the node and the bag tool share, and the single declaration of every setting."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from conftest import make_textured_image

from alike_ros import parameter_table
from alike_ros.config import settings_of
from alike_ros.detection.dkd import DetectorConfig
from alike_ros.matching.matcher import MatcherConfig
from alike_ros.model.weights import bundled_weights_path
from alike_ros.pipeline import STAGES, FramePipeline, PipelineConfig, extract_in_batches, parse_sizes

SECOND = 10**9


@pytest.fixture(scope="module")
def pipeline_config() -> PipelineConfig:
    if not bundled_weights_path("alike-t").is_file():
        pytest.skip("no bundled alike-t weights")
    return PipelineConfig(device="cpu", warmup_frames=0, detector=DetectorConfig(max_keypoints=300))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """A textured scene moving 3 px right and 2 px down per frame."""
    scene = make_textured_image(rectangles=False)
    return [np.ascontiguousarray(np.roll(scene, (2 * k, 3 * k), axis=(0, 1))[40:200, 40:280]) for k in range(3)]


def test_tracks_continue_and_every_stage_is_timed(pipeline_config, frames):
    pipeline = FramePipeline(pipeline_config)
    first = pipeline(frames[0], "rgb", 1 * SECOND)
    second = pipeline(frames[1], "rgb", 2 * SECOND)
    assert set(first.timings) == set(second.timings) == set(STAGES)
    assert first.previous_stamp_ns is None and len(first.tracked.matches) == 0 and first.reset == ""
    assert second.previous_stamp_ns == 1 * SECOND and len(second.tracked.matches) > 50
    i0, i1 = second.tracked.matches.indices.T
    shift = second.tracked.features.keypoints[i1] - first.tracked.features.keypoints[i0]
    assert np.median(shift, axis=0) == pytest.approx([3.0, 2.0], abs=0.1)
    np.testing.assert_array_equal(second.tracked.track_ids[i1], first.tracked.track_ids[i0])


def test_reset_rules(pipeline_config, frames):
    pipeline = FramePipeline(pipeline_config)
    pipeline(frames[0], "rgb", 5 * SECOND)
    back = pipeline(frames[1], "rgb", 4 * SECOND)  # a bag looped
    assert back.reset == "time went backwards" and back.previous_stamp_ns is None and len(back.tracked.matches) == 0
    smaller = pipeline(frames[2][:100, :200], "rgb", 6 * SECOND)
    assert smaller.reset == "image size changed" and len(smaller.tracked.matches) == 0
    again = pipeline(frames[2][:100, :200], "rgb", 7 * SECOND)
    assert again.reset == "" and len(again.tracked.matches) > 0
    pipeline.reconfigure(PipelineConfig(**{**vars(pipeline_config), "matching": False}))
    off = pipeline(frames[2][:100, :200], "rgb", 8 * SECOND)
    assert len(off.tracked.matches) == 0 and off.tracked.track_lengths.max() == 1


def test_reconfigure_applies_from_the_next_frame_and_refuses_a_new_model(pipeline_config, frames):
    pipeline = FramePipeline(pipeline_config)
    assert len(pipeline(frames[0], "rgb", SECOND).tracked.features) == 300
    pipeline.reconfigure(PipelineConfig(**{**vars(pipeline_config), "detector": DetectorConfig(max_keypoints=50)}))
    assert len(pipeline(frames[1], "rgb", 2 * SECOND).tracked.features) == 50
    with pytest.raises(ValueError, match="new FramePipeline"):
        pipeline.reconfigure(PipelineConfig(**{**vars(pipeline_config), "model": "alike-s"}))
    with pytest.raises(ValueError, match="window_size"):
        pipeline.reconfigure(PipelineConfig(**{**vars(pipeline_config), "detector": DetectorConfig(window_size=4)}))


def test_cameras_can_share_one_extractor(pipeline_config, frames):
    first = FramePipeline(pipeline_config)
    second = FramePipeline(pipeline_config, extractor=first.extractor)
    assert second.extractor is first.extractor
    first(frames[0], "rgb", SECOND)
    assert second(frames[1], "rgb", SECOND).previous_stamp_ns is None  # its own tracks


def test_frames_of_one_size_and_max_side_are_extracted_in_one_batch(pipeline_config, frames):
    first = FramePipeline(pipeline_config)
    cameras = [first] + [FramePipeline(pipeline_config, extractor=first.extractor) for _ in range(4)]
    small = FramePipeline(replace(pipeline_config, max_side=120), extractor=first.extractor)
    cropped = np.ascontiguousarray(frames[2][:, :200])
    inputs = [(frames[0], "rgb"), (frames[1], "rgb"), (cropped, "rgb"), None, (frames[2], "rgb"), (frames[2], "rgb")]
    features = extract_in_batches([*cameras, small], inputs)
    # one batch of the three full-size frames at the shared max_side; the others left to their cameras
    assert [f is not None for f in features] == [True, True, False, False, True, False]
    for frame, found in zip(inputs, features, strict=True):
        if found is not None:
            np.testing.assert_allclose(found.keypoints, first.extractor(*frame).keypoints, atol=1e-4)


def test_warm_up_runs_extraction_and_matching_at_every_size_then_forgets(pipeline_config, frames):
    config = PipelineConfig(**{**vars(pipeline_config), "warmup_frames": 2, "warmup_sizes": "200x100, 96X64"})
    assert parse_sizes(config.warmup_sizes) == [(100, 200), (64, 96)]
    pipeline = FramePipeline(config)
    extract, update = pipeline.extractor, pipeline.tracker.update
    sizes, matched = [], []

    def watched_extract(image, *args):
        sizes.append(image.shape[:2])
        return extract(image, *args)

    def watched_update(features, *args):
        tracked = update(features, *args)
        matched.append(tracked.previous is not None)
        return tracked

    pipeline.extractor, pipeline.tracker.update = watched_extract, watched_update
    pipeline.warm_up()  # what the constructor ran, watched
    assert sizes == [(100, 200)] * 2 + [(64, 96)] * 2
    assert matched == [False, True, False, True]  # each size's second frame goes through matching
    first = pipeline(frames[0], "rgb", SECOND)  # nothing of the warm-up is left: new tracks, no previous frame
    assert first.previous_stamp_ns is None and len(first.tracked.matches) == 0
    assert first.tracked.track_lengths.max() == 1


def test_threads_apply_at_build_and_on_reconfigure(pipeline_config):
    before = torch.get_num_threads()
    try:
        pipeline = FramePipeline(PipelineConfig(**{**vars(pipeline_config), "threads": 1}))
        assert torch.get_num_threads() == 1
        pipeline.reconfigure(PipelineConfig(**{**vars(pipeline_config), "threads": 2}))
        assert torch.get_num_threads() == 2
        pipeline.reconfigure(PipelineConfig(**{**vars(pipeline_config), "threads": 0}))  # 0 leaves it as it is
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_every_parameter_default_and_range_comes_from_one_declaration():
    pipeline = settings_of(PipelineConfig)
    for name, field in parameter_table.PIPELINE_FIELDS.items():
        assert parameter_table.BY_NAME[name].spec is pipeline[field]
    for prefix, config in (("detector.", DetectorConfig), ("matching.", MatcherConfig)):
        for name, spec in settings_of(config).items():
            assert parameter_table.BY_NAME[prefix + name].spec is spec
    # every field of the core configs is a declared setting or a nested config
    nested = {"detector", "matcher"}
    for config in (PipelineConfig, DetectorConfig, MatcherConfig):
        assert {f.name for f in fields(config)} - nested == set(settings_of(config))
    # the defaults of the table are those of the configs
    assert parameter_table.pipeline_config(parameter_table.DEFAULTS) == PipelineConfig()


def test_out_of_range_values_are_refused_by_the_core_configs():
    with pytest.raises(ValueError, match=r"window_size must be in \[3, 31\]"):
        DetectorConfig(window_size=99).validate()
    with pytest.raises(ValueError, match="multiple of 2"):
        DetectorConfig(window_size=6).validate()
    with pytest.raises(ValueError, match=r"score_threshold must be in \[0, 1\)"):
        DetectorConfig(score_threshold=1.0).validate()
    with pytest.raises(ValueError, match="min_similarity"):
        MatcherConfig(min_similarity=1.5).validate()
    with pytest.raises(ValueError, match="model must be one of"):
        PipelineConfig(model="alike-q").validate()
    DetectorConfig(score_threshold=0).validate()  # an int where a float is declared is fine from Python
    with pytest.raises(ValueError, match="must be a float"):  # but not as a parameter, as with rclpy
        parameter_table.validate({**parameter_table.DEFAULTS, "detector.score_threshold": 0})


def test_a_params_file_without_values_gives_the_declared_defaults(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    model: alike-t\n")
    assert parameter_table.Settings.from_params(parameter_table.read_params(path)).pipeline == PipelineConfig()


def test_the_extract_command_line_takes_its_options_from_the_core_configs(tmp_path, capsys):
    from alike_ros.cli.extract import main, parser

    args = parser().parse_args(["x.png", "--out", str(tmp_path)])
    for name, spec in {**settings_of(DetectorConfig), **settings_of(PipelineConfig)}.items():
        if hasattr(args, name):
            assert getattr(args, name) == spec.default, name
    assert {"window_size", "top_k", "score_threshold", "max_keypoints", "border", "temperature"} <= set(vars(args))
    assert main(["x.png", "--out", str(tmp_path), "--window-size", "99"]) == 2  # the node's limit, from one place
    assert "window_size must be in [3, 31]" in capsys.readouterr().err
