"""`bag report` on real-camera bags (no ground truth), on recordings of the live node, and its video and plot."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from PIL import Image as PILImage
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, PointCloud2

from alike_ros.bag.cli import main as bag_cli
from alike_ros.bag.report import MAX_MARKS, MIN_TRACK, analyse, choose_marks, figure, render_video
from alike_ros.bag.sample import SampleConfig, make_sample
from alike_ros.bag.storage import open_bag, read_custom_data, write_bag
from alike_ros.model.weights import bundled_weights_path

SIZE = {"width": 256, "height": 192}
FRAMES = 5
WALL_NS = 1_800_000_000 * 10**9  # "now" of the synthetic live recordings: far from the sample's stamps
LATENCY_MS = [400.0, 20.0, 25.0, 30.0, 35.0]  # per frame; the first is the cold start
DROPPED = 3  # the frame whose features the synthetic live recording lacks
TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/PointCloud2": PointCloud2}


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    """The sample, its processed bag (via the CLI), and both without their NS/homography topic."""
    weights = next(
        (p for p in (bundled_weights_path("alike-t"), REFERENCE / "weights" / "alike-t.pth") if p.is_file()), None
    )
    if weights is None:
        pytest.skip("no alike-t weights: neither bundled nor the shared upstream checkpoint")
    root = tmp_path_factory.mktemp("report")
    sample = make_sample(root / "sample", SampleConfig(frames=FRAMES, **SIZE))
    argv = ["process", str(sample), str(root / "processed"), "--weights", str(weights), "--device", "cpu"]
    assert bag_cli([*argv, "--debug-image", "--quiet"]) == 0
    out = {"sample": sample, "processed": root / "processed"}
    for name in ("sample", "processed"):
        out[f"{name}_camera"] = copy_bag(out[name], root / f"{name}_camera", keep=lambda t: t != "/camera/homography")
    return out


def copy_bag(
    src: Path,
    dst: Path,
    keep: Callable[[str], bool],
    retime: Callable[[str, int], int | None] | None = None,
    extra: list[tuple[str, str, int, object]] = (),
    metadata: bool = True,
) -> Path:
    """A copy of the topics `keep` accepts, at `retime(topic, header stamp)` (None: left out) if given, plus
    `extra` (topic, type, timestamp, rclpy message); written in time order, with the same metadata if asked."""
    items = []
    with open_bag(src) as reader, write_bag(dst, custom_data=read_custom_data(src) if metadata else None) as bag:
        conns = {c.id: bag.copy_connection(c) for c in reader.connections if keep(c.topic)}
        for conn, timestamp, raw in reader.messages([c for c in reader.connections if c.id in conns]):
            if retime is not None:
                header = deserialize_message(raw, TYPES[conn.msgtype]).header
                timestamp = retime(conn.topic, header.stamp.sec * 10**9 + header.stamp.nanosec)
            if timestamp is not None:
                items.append((timestamp, conns[conn.id], bytes(raw)))
        for topic, msgtype, timestamp, msg in extra:
            items.append((timestamp, bag.add_topic(topic, msgtype), msg))
        for timestamp, conn, message in sorted(items, key=lambda item: item[0]):
            bag.write(conn, timestamp, message)
    return dst


def diagnostics(received: int, processed: int, end_to_end_ms: float) -> DiagnosticArray:
    values = {
        "frames.received": received,
        "frames.processed": processed,
        "frames.dropped": 0,
        "latency.network.p50_ms": "10.000",
        "latency.network.mean_ms": "10.000",
        "latency.network.p95_ms": "12.000",
        "latency.end_to_end.p50_ms": f"{end_to_end_ms:.3f}",
        "latency.end_to_end.mean_ms": f"{end_to_end_ms:.3f}",
        "latency.end_to_end.p95_ms": f"{end_to_end_ms:.3f}",
    }
    status = DiagnosticStatus(name="extractor", values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(status=[status])


def live_recording(bags: dict[str, Path], dst: Path, wall_clock: bool) -> Path:
    """What `bag replay --lockstep --record` would record of the node's answers to the sample, the image topic
    included: on the wall clock (frame k sent at WALL_NS + k * 0.2 s, answered LATENCY_MS[k] later), or, as
    under --clock, on bag time (everything at its frame's stamp). Frame DROPPED gets no answer; the node's
    only /diagnostics message came after two frames, with the sim-time end_to_end of a lockstep replay: 0."""
    with open_bag(bags["sample"]) as reader:
        stamps = sorted(t for c, t, _ in reader.messages([c for c in reader.connections if c.topic.endswith("raw")]))

    def retime(topic: str, stamp: int) -> int | None:
        k = stamps.index(stamp)
        if topic != "/camera/image_raw" and k == DROPPED:
            return None
        if not wall_clock:
            return stamp
        sent = WALL_NS + k * 200_000_000
        return sent if topic == "/camera/image_raw" else sent + round(LATENCY_MS[k] * 1e6)

    when = WALL_NS + 300_000_000 if wall_clock else stamps[1] + 1
    extra = [("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", when, diagnostics(2, 2, 0.0))]
    keep = {"/camera/image_raw", "/camera/features", "/camera/matches"}.__contains__
    return copy_bag(bags["processed"], dst, keep, retime, extra, metadata=False)  # replay writes none


# ---------------------------------------------------------------- ground truth is optional


def test_report_without_ground_truth(bags: dict[str, Path], tmp_path: Path, capsys):
    """A processed real-camera bag has no NS/homography: counts, tracks and timings, no accuracy, no error."""
    argv = ["report", str(bags["processed_camera"]), "--json", str(tmp_path / "r.json")]
    assert bag_cli([*argv, "--plot", str(tmp_path / "r.png")]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"/camera: {FRAMES} of {FRAMES} images processed, 0 dropped" in out
    assert "vs ground truth" not in out and "timings offline, wall clock" in out
    cam = json.loads((tmp_path / "r.json").read_text())["/camera"]
    assert (cam["frames"], cam["images"], cam["dropped"]) == (FRAMES, FRAMES, 0)
    assert cam["tracks"] > 100 and cam["track_length_max"] == FRAMES
    assert "accuracy_3px" not in cam and "median_error_px" not in cam
    assert {"network", "matching"} <= set(cam["offline_timings_ms"])


def test_report_with_ground_truth_lacking_homographies(bags: dict[str, Path], capsys):
    """--ground-truth naming a bag without homographies: a one-line note and the report without accuracy."""
    assert bag_cli(["report", str(bags["processed"]), "--ground-truth", str(bags["sample_camera"])]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: {bags['sample_camera']} has no NS/homography topic "
        "(std_msgs/msg/Float64MultiArray) for /camera/homography: no accuracy reported"
    ]
    assert f"/camera: {FRAMES} of {FRAMES} images processed" in out and "vs ground truth" not in out
    # the same bag with its own homographies, or with a ground truth that has them, is checked against them
    for argv in ([str(bags["processed"])], [str(bags["processed_camera"]), "--ground-truth", str(bags["sample"])]):
        assert bag_cli(["report", *argv]) == 0
        assert "% of matches within 3 px" in capsys.readouterr().out


# ---------------------------------------------------------------- recordings of the live node


def test_live_recording_counts_and_wall_clock_latency(bags: dict[str, Path], tmp_path: Path, capsys):
    """Counts come from the bag (not from the node's last /diagnostics, which came before the last frames);
    latency is measured per frame on the recording's wall clock, the first frame (cold start) apart."""
    live = live_recording(bags, tmp_path / "live", wall_clock=True)
    argv = ["report", str(live), "--ground-truth", str(bags["sample"]), "--json", str(tmp_path / "r.json")]
    assert bag_cli(argv) == 0
    out = capsys.readouterr().out
    cam = json.loads((tmp_path / "r.json").read_text())["/camera"]
    assert (cam["frames"], cam["images"], cam["dropped"]) == (FRAMES - 1, FRAMES, 1)
    assert f"/camera: {FRAMES - 1} of {FRAMES} images processed, 1 dropped" in out
    latency = cam["latency_ms"]
    assert latency["clock"] == "wall"
    assert latency["first_frame"] == pytest.approx(LATENCY_MS[0])
    steady = [v for k, v in enumerate(LATENCY_MS) if k not in (0, DROPPED)]
    assert latency["steady"]["frames"] == len(steady)
    assert latency["steady"]["mean"] == pytest.approx(np.mean(steady))
    assert latency["steady"]["p50"] == pytest.approx(np.median(steady))
    assert latency["steady"]["max"] == pytest.approx(max(steady))
    assert "first frame 400.0 ms (cold start)" in out
    assert "node's last /diagnostics: 2 received, 2 processed, 0 dropped; it was published before the last 2" in out
    assert "end_to_end" not in out  # the node's own, on its clock, is not a latency of this recording


def test_live_recording_on_bag_time_reports_no_latency(bags: dict[str, Path], tmp_path: Path, capsys):
    """Recorded under --clock, receive times are bag time: no latency of 0 ms, but the reason."""
    live = live_recording(bags, tmp_path / "live", wall_clock=False)
    assert (
        bag_cli(["report", str(live), "--ground-truth", str(bags["sample"]), "--json", str(tmp_path / "r.json")]) == 0
    )
    out = capsys.readouterr().out
    cam = json.loads((tmp_path / "r.json").read_text())["/camera"]
    assert "latency_ms" not in cam
    assert "no end-to-end latency: the recording times are not wall-clock receive times" in out
    assert "0.0 ms" not in out and "end_to_end" not in out


# ---------------------------------------------------------------- video and plot


def test_choose_marks():
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(0, 320, (3000, 2)).astype(np.float32)
    scores = rng.uniform(0, 1, 3000).astype(np.float32)
    lengths = rng.integers(1, 8, 3000)
    chosen = choose_marks(keypoints, scores, lengths)
    assert 0 < len(chosen) <= MAX_MARKS
    assert (lengths[chosen] >= MIN_TRACK).all()
    assert (np.diff(scores[chosen]) <= 0).all(), "not best-scored first"
    cells = {tuple(c) for c in np.floor(keypoints[chosen] / (keypoints.max() / 16)).astype(int)}
    assert len(cells) == len(chosen), "two marks in one grid cell"
    assert len(choose_marks(keypoints, scores, np.ones(3000, int))) == 0


def test_video_is_readable(bags: dict[str, Path], tmp_path: Path):
    """Small frames are upscaled to >= 640 px, one video frame per processed frame, drawn from the images."""
    assert bag_cli(["report", str(bags["processed"]), "--video", str(tmp_path / "v.gif")]) == 0
    with PILImage.open(tmp_path / "v.gif") as gif:
        assert gif.n_frames == FRAMES and gif.size[0] == 640 and gif.size[1] > 640 * SIZE["height"] // SIZE["width"]
    report = analyse(bags["processed"], video=True)["/camera"]
    assert [len(report.marks[s].tails) for s in sorted(report.marks)][: MIN_TRACK - 1] == [0] * (MIN_TRACK - 1)
    assert all(0 < len(report.marks[s].tails) <= MAX_MARKS for s in sorted(report.marks)[MIN_TRACK - 1 :])
    frames = render_video(bags["processed"], report)
    plain = render_video(bags["processed"], analyse(bags["processed"])["/camera"])  # no marks kept
    assert len(frames) == FRAMES and frames[0].shape[1] == 640
    assert np.array_equal(frames[0], plain[0]) and not np.array_equal(frames[-1], plain[-1])


def test_plot_panels(bags: dict[str, Path], tmp_path: Path):
    """Keypoints on tracks (not only the flat line at the cap) and a timing panel, per frame where measured."""
    import matplotlib.pyplot as plt

    offline = figure(analyse(bags["processed_camera"]), {"/camera": {"network": {"p50": 9.0, "p95": 12.0}}})
    labels = [ax.get_ylabel() for ax in offline.axes]
    assert "correct matches (%)" not in labels  # no ground truth, no empty panel
    tracked = offline.axes[0].lines[0].get_ydata()
    assert len(set(tracked)) > 2 and max(tracked) < 2000
    assert "per-stage timing" in offline.axes[-1].get_title()
    live = figure(analyse(live_recording(bags, tmp_path / "live", wall_clock=True)))
    assert "latency" in live.axes[-1].get_ylabel()
    latencies = live.axes[-1].lines[0].get_ydata()
    np.testing.assert_allclose(latencies, [v for k, v in enumerate(LATENCY_MS) if k != DROPPED])
    plt.close("all")
