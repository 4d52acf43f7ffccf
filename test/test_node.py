"""The extractor node with the real rclpy, in process: a probe node publishes images and reads every output.

One node serves most tests (loading a model costs seconds on a loaded machine); each test publishes frames
in lock-step (the next only after the previous one's features came back) so nothing depends on timing, and
stamps only move forward unless a test makes them jump back on purpose.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy", reason="the node tests need rclpy")

from conftest import make_textured_image  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.time import Time  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from alike_ros.model.weights import bundled_weights_path  # noqa: E402
from alike_ros.monitoring import STAGES, Level  # noqa: E402
from alike_ros.ros.conversions import array_to_image, from_bgr8  # noqa: E402
from alike_ros.ros.messages import decode_features, decode_matches, decode_stereo_matches  # noqa: E402
from alike_ros.ros.node import ExtractorNode  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "eval"
WAIT = 120.0  # seconds before a wait gives up: a failure guard on a loaded machine, never a measurement
SIZE = (240, 320)  # frames of the synthetic sequences (height, width)
SHIFT = np.array([3.0, 2.0])  # known motion of the scene between consecutive frames, in pixels (x, y)


@pytest.fixture(scope="module")
def ros_context() -> Iterator[Context]:
    """A private rclpy context on a domain of its own, so parallel sessions never hear each other."""
    context = Context()
    rclpy.init(context=context, domain_id=20 + os.getpid() % 35)  # 20..54; the process test takes 55..89
    yield context
    context.try_shutdown()


def scene(textured: np.ndarray) -> np.ndarray:
    """A large textured grey canvas to cut shifted frames from: a real photo when there is one."""
    photos = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    if photos:
        grey = cv2.imread(str(photos[0]), cv2.IMREAD_GRAYSCALE)
        if grey is not None:
            return cv2.resize(grey, (480, 360), interpolation=cv2.INTER_AREA)
    return cv2.resize(textured, (480, 360), interpolation=cv2.INTER_LINEAR)


def frame_at(canvas: np.ndarray, k: int) -> np.ndarray:
    """Frame k: the window moves by -SHIFT per frame, so the scene moves by +SHIFT in the image."""
    x0, y0 = (np.array([100, 80]) - k * SHIFT).astype(int)
    return np.ascontiguousarray(canvas[y0 : y0 + SIZE[0], x0 : x0 + SIZE[1]])


def extractor_and_probe(context: Context, namespace: str, overrides: dict, probe: str) -> tuple[ExtractorNode, Node]:
    node = ExtractorNode(
        context=context, namespace=namespace, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
    )
    return node, Node(probe, context=context, namespace=namespace)


def wait_notified(cond: threading.Condition, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Wait until `predicate` holds, checked whenever `cond` is notified (and every 50 ms); False after `timeout`."""
    deadline = time.monotonic() + timeout
    with cond:
        while not predicate():
            if time.monotonic() > deadline:
                return False
            cond.wait(0.05)
    return True


def spin_apart(context: Context, *nodes: Node) -> list[SingleThreadedExecutor]:
    """One executor thread per node, as in a deployment (separate processes): a shared one lets them starve each
    other."""
    executors = []
    for node in nodes:
        executors.append(SingleThreadedExecutor(context=context))
        executors[-1].add_node(node)
        threading.Thread(target=executors[-1].spin, daemon=True).start()
    return executors


class Probe:
    """The outside world of one extractor node: publishers of its inputs and recorders of its outputs."""

    def __init__(self, context: Context, namespace: str, overrides: dict):
        self.node, self.probe = extractor_and_probe(context, namespace, overrides, "probe")
        self.cond = threading.Condition()
        self.received: dict[str, list] = {"features": [], "matches": [], "debug_image": [], "features_vins": []}
        self.diagnostics: list[DiagnosticStatus] = []
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.probe.create_publisher(Image, "image", reliable)
        self.compressed_pub = self.probe.create_publisher(CompressedImage, "image/compressed", reliable)
        self.info_pub = self.probe.create_publisher(CameraInfo, "camera_info", reliable)
        self.clock_pub = self.probe.create_publisher(Clock, "/clock", reliable)
        for topic, kind in (("features", PointCloud2), ("matches", PointCloud2), ("features_vins", PointCloud)):
            self.probe.create_subscription(kind, topic, self._recorder(topic), reliable)
        self.debug_sub = None
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.set_client = self.probe.create_client(
            SetParameters, f"{self.node.get_fully_qualified_name()}/set_parameters"
        )
        self.executors = spin_apart(context, self.node, self.probe)
        self._last_stamp_ns = 0  # every test takes fresh, increasing stamps close to the clock's time
        self.wait_connected(self.image_pub)
        assert self.wait(lambda: self.probe.count_publishers(self.node.resolve_topic_name("features")) > 0)

    def wait_connected(self, publisher) -> None:
        """Wait until the probe's publisher and the node's image subscription have matched, on both sides:
        a message published before the subscription's side has matched is lost, even if reliable."""
        assert self.wait(lambda: publisher.get_subscription_count() > 0), "the node never subscribed"
        assert self.wait(lambda: self.node.streams[""].image_sub.get_publisher_count() > 0), (
            "the node never saw the publisher"
        )

    def _recorder(self, topic: str) -> Callable:
        def record(msg) -> None:
            with self.cond:
                self.received[topic].append(msg)
                self.cond.notify_all()

        return record

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.cond:
            self.diagnostics += [s for s in msg.status if s.name.startswith(self.node.get_fully_qualified_name())]
            self.cond.notify_all()

    def subscribe_debug(self) -> None:
        self.debug_sub = self.probe.create_subscription(
            Image, "debug_image", self._recorder("debug_image"), QoSProfile(depth=10)
        )
        assert self.wait(lambda: self.node.streams[""].debug_pub.get_subscription_count() > 0)

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        return wait_notified(self.cond, predicate, timeout)

    def header(self, sec: int | None = None) -> Header:
        """A header stamped now (strictly after the previous one), or at `sec` seconds."""
        if sec is None:
            self._last_stamp_ns = max(self.node.get_clock().now().nanoseconds, self._last_stamp_ns + 1_000_000)
            return Header(frame_id="camera_optical", stamp=Time(nanoseconds=self._last_stamp_ns).to_msg())
        return Header(frame_id="camera_optical", stamp=Time(seconds=sec).to_msg())

    def features_for(self, header: Header) -> PointCloud2 | None:
        with self.cond:
            return next((m for m in self.received["features"] if m.header == header), None)

    def latest(self, topic: str, header: Header):
        with self.cond:
            return next((m for m in reversed(self.received[topic]) if m.header == header), None)

    def arrived(self, topic: str, header: Header):
        """The message of `topic` for `header`, waiting for it: topics arrive independently of `features`."""
        assert self.wait(lambda: self.latest(topic, header) is not None), f"no {topic} for stamp {header.stamp}"
        return self.latest(topic, header)

    def send(self, pixels: np.ndarray, encoding: str = "mono8", header: Header | None = None) -> PointCloud2:
        """Publish one image and return its features (lock-step)."""
        header = header or self.header()
        self.image_pub.publish(array_to_image(pixels, encoding, header))
        assert self.wait(lambda: self.features_for(header) is not None), f"no features for stamp {header.stamp}"
        return self.features_for(header)

    def send_bad(self, msg: Image | CompressedImage) -> None:
        """Publish a bad message and wait until the node has counted it as bad input."""
        before = self.node.statistics().dropped["bad_input"]
        (self.compressed_pub if isinstance(msg, CompressedImage) else self.image_pub).publish(msg)
        assert self.wait(lambda: self.node.statistics().dropped["bad_input"] > before), "bad input not counted"

    def set(self, **values) -> list:
        return self.node.set_parameters([Parameter(k.replace("__", "."), value=v) for k, v in values.items()])

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()


def weights_of(model: str) -> Path:
    """The bundled weights of `model` when the package ships them, else upstream's from ../shared, else skip."""
    bundled = bundled_weights_path(model)
    if bundled.is_file():
        return bundled
    upstream = PHOTOS.parents[2] / "reference" / "weights" / f"{model}.pth"
    if not upstream.is_file():
        pytest.skip(f"no {model} weights: neither bundled nor at {upstream}")
    return upstream


@pytest.fixture(scope="module")
def alike_t_weights() -> Path:
    return weights_of("alike-t")


@pytest.fixture(scope="module")
def probe(ros_context, alike_t_weights) -> Iterator[Probe]:
    p = Probe(
        ros_context,
        "/alike_test",
        {
            "weights": str(alike_t_weights),
            "warmup_frames": 1,
            "diagnostics.period": 0.5,
            "detector.max_keypoints": 500,
            # Lock-step tests wait for every frame they send: reliable input so a loaded machine cannot lose
            # one. Best effort (the default) is what the process test and the benchmark run.
            "input.qos.reliability": "reliable",
        },
    )
    yield p
    p.close()


@pytest.fixture(scope="module")
def canvas() -> np.ndarray:
    return scene(make_textured_image(rectangles=False))


def test_layouts_headers_and_tracks_follow_known_motion(probe, canvas):
    frames, headers = [], []
    for k in range(4):
        headers.append(probe.header())
        frames.append(probe.send(frame_at(canvas, k), header=headers[-1]))
    decoded = [decode_features(f) for f in frames]
    for msg, header, feats in zip(frames, headers, decoded, strict=True):
        assert msg.header == header  # stamp and frame_id unchanged
        assert [f.name for f in msg.fields] == ["x", "y", "score", "track_id", "descriptor"]
        assert msg.height == 1 and msg.width == len(feats.keypoints) > 50 and msg.is_dense and not msg.is_bigendian
        assert np.all(np.diff(feats.scores) <= 0)
        np.testing.assert_allclose(np.linalg.norm(feats.descriptors, axis=1), 1.0, atol=1e-4)
        assert np.all((feats.keypoints >= 0) & (feats.keypoints <= np.array(SIZE[::-1]) - 1))
    first = probe.arrived("matches", headers[0])
    assert first is not None and first.width == 0  # nothing to match the first frame against
    for k in range(1, 4):
        matches = decode_matches(probe.arrived("matches", headers[k]))
        prev, cur = decoded[k - 1], decoded[k]
        assert len(matches) > 30
        assert np.all(matches["stamp0_sec"] == headers[k - 1].stamp.sec)
        np.testing.assert_array_equal(matches["x0"], prev.keypoints[matches["index0"], 0])
        np.testing.assert_array_equal(matches["y1"], cur.keypoints[matches["index1"], 1])
        np.testing.assert_array_equal(matches["track_id"], prev.track_ids[matches["index0"]])
        np.testing.assert_array_equal(matches["track_id"], cur.track_ids[matches["index1"]])
        motion = np.stack((matches["x1"] - matches["x0"], matches["y1"] - matches["y0"]), axis=1)
        agree = np.linalg.norm(motion - SHIFT, axis=1) < 1.5
        assert agree.mean() > 0.75, f"only {agree.mean():.0%} of matches follow the known motion"
        np.testing.assert_allclose(np.median(motion, axis=0), SHIFT, atol=0.3)
    # Tracks continue: some keypoint of the first frame is still followed in the last one.
    assert len(np.intersect1d(decoded[0].track_ids, decoded[3].track_ids)) > 10


def test_debug_image_only_while_subscribed(probe, canvas):
    probe.send(frame_at(canvas, 0))
    assert not probe.received["debug_image"]  # nobody listened, nothing was drawn
    probe.subscribe_debug()
    probe.send(frame_at(canvas, 0))
    header = probe.header()
    probe.send(frame_at(canvas, 1), header=header)
    assert probe.wait(lambda: probe.latest("debug_image", header) is not None)
    debug = probe.latest("debug_image", header)
    assert (debug.encoding, debug.height, debug.width) == ("bgr8", *SIZE)
    pixels = np.frombuffer(bytes(debug.data), np.uint8).reshape(*SIZE, 3)
    assert np.any(pixels[..., 0] != pixels[..., 2])  # coloured marks on a grey image
    probe.probe.destroy_subscription(probe.debug_sub)


def test_time_going_back_or_size_change_restarts_tracks(probe, canvas):
    probe.send(frame_at(canvas, 0))
    last = probe.header()
    ids_before = decode_features(probe.send(frame_at(canvas, 1), header=last)).track_ids
    assert probe.arrived("matches", last).width > 0
    back = probe.header(sec=last.stamp.sec - 500)  # a bag looped
    ids_after = decode_features(probe.send(frame_at(canvas, 1), header=back)).track_ids
    assert probe.arrived("matches", back).width == 0
    assert ids_after.min() > ids_before.max()  # fresh ids, never reused
    resized = probe.header()
    probe.send(cv2.resize(frame_at(canvas, 1), (200, 150)), header=resized)
    assert probe.arrived("matches", resized).width == 0


def test_every_encoding_is_processed(probe, canvas):
    grey = frame_at(canvas, 0)
    bgr = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    samples = {
        "mono8": grey,
        "8UC1": grey,
        "mono16": grey.astype(np.uint16) * 257,
        "bgr8": bgr,
        "rgb8": bgr[..., ::-1].copy(),
        "8UC3": bgr,
        "bgra8": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "rgba8": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA),
    }
    reference = decode_features(probe.send(grey)).keypoints
    for encoding, pixels in samples.items():
        keypoints = decode_features(probe.send(pixels, encoding)).keypoints
        np.testing.assert_allclose(keypoints, reference, atol=1e-3, err_msg=encoding)


class Patched:
    """Stands in for the extractor: `call` replaces its call, everything else is the real one's."""

    def __init__(self, real: object, call: Callable):
        self._real, self._call = real, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def accounted(snap) -> bool:
    """Every frame that reached the node was processed or dropped with a reason (missed ones never reached it)."""
    return snap.received == snap.processed + snap.dropped_total - snap.dropped["missed"]


def good_after(probe: Probe, canvas: np.ndarray) -> None:
    assert decode_features(probe.send(frame_at(canvas, 0))).keypoints.shape[0] > 0


def test_driver_encodings_give_keypoints_in_their_own_pixels(probe, canvas):
    """The same frame straight from drivers of other encodings (Bayer, YUV, 16-bit colour, float): the keypoints lie
    where those of its bgr8 copy lie, in pixels of the frame as received."""
    bgr = cv2.cvtColor(frame_at(canvas, 0), cv2.COLOR_GRAY2BGR)
    reference = decode_features(probe.send(bgr, "bgr8")).keypoints
    for encoding in ("bayer_gbrg8", "bayer_rggb16", "yuv422_yuy2", "nv21", "rgba16", "32FC1"):
        keypoints = decode_features(probe.send(from_bgr8(bgr, encoding), encoding)).keypoints
        nearest = np.linalg.norm(keypoints[:, None] - reference[None], axis=2).min(axis=1)
        # debayering softens edges, so weak keypoints move: 64 % within 1 px for Bayer, 6 % for a frame 2 px off
        assert len(keypoints) > 50 and np.mean(nearest < 1.0) > 0.5, (encoding, len(keypoints), np.mean(nearest < 1))


def test_survives_bad_input(probe, canvas):
    grey = frame_at(canvas, 0)
    good = array_to_image(grey, "mono8", probe.header())

    def bad(**fields) -> Image:
        msg = array_to_image(grey, "mono8", probe.header())
        for name, value in fields.items():
            setattr(msg, name, value)
        return msg

    bad_messages = [
        bad(encoding="nv24"),  # unknown
        bad(encoding="nv21"),  # no chroma plane below the image rows
        bad(encoding="yuv422", width=5, step=10, data=b"\0" * 10 * grey.shape[0]),  # odd width of YUV 4:2:2
        array_to_image(np.full(grey.shape, np.nan, np.float32), "32FC1", probe.header()),  # no intensities
        bad(encoding="bgr8"),  # wrong for the data: rows too short
        bad(encoding="mono16"),  # wrong for the data: rows too short
        bad(step=good.step + 4),  # step / data mismatch
        bad(data=bytes(good.data)[:-10]),  # truncated data
        bad(width=0, height=0, step=0, data=b""),  # zero size
        bad(width=200_000, height=100_000, step=200_000, data=b"\0" * 64),  # very large, lying header
    ]
    for msg in bad_messages:
        probe.send_bad(msg)
        good_after(probe, canvas)
    assert probe.node.statistics().dropped["bad_input"] >= len(bad_messages)


def test_compressed_transport_and_corrupt_data(probe, canvas):
    assert all(r.successful for r in probe.set(input__transport="compressed"))
    probe.wait_connected(probe.compressed_pub)
    try:
        png = cv2.imencode(".png", frame_at(canvas, 0))[1].tobytes()
        for data in (b"definitely not a jpeg", png[: len(png) // 3]):
            probe.send_bad(CompressedImage(header=probe.header(), format="png", data=data))
            header = probe.header()
            probe.compressed_pub.publish(CompressedImage(header=header, format="png", data=png))
            assert probe.wait(lambda h=header: probe.features_for(h) is not None)
    finally:
        assert all(r.successful for r in probe.set(input__transport="raw"))
    probe.wait_connected(probe.image_pub)
    good_after(probe, canvas)


def test_model_failure_is_counted_and_the_node_goes_on(probe, canvas):
    pipeline = probe.node.streams[""].pipeline
    real = pipeline.extractor

    def broken(*args, **kwargs):
        raise RuntimeError("simulated CUDA out of memory")

    pipeline.extractor = Patched(real, broken)
    try:
        before = probe.node.statistics().dropped["model_failure"]
        probe.image_pub.publish(array_to_image(frame_at(canvas, 0), "mono8", probe.header()))
        assert probe.wait(lambda: probe.node.statistics().dropped["model_failure"] > before)
        assert probe.wait(
            lambda: any(s.level == DiagnosticStatus.ERROR and "model failed" in s.message for s in probe.diagnostics)
        )
    finally:
        pipeline.extractor = real
    good_after(probe, canvas)


def test_diagnostics_content(probe, canvas):
    for k in range(3):
        probe.send(frame_at(canvas, k))
    count = len(probe.diagnostics)
    assert probe.wait(lambda: len(probe.diagnostics) > count)
    status = probe.diagnostics[-1]
    values = {kv.key: kv.value for kv in status.values}
    for stage in (*STAGES, "end_to_end"):
        for stat in ("mean_ms", "p50_ms", "p95_ms", "max_ms"):
            assert float(values[f"latency.{stage}.{stat}"]) >= 0.0
        assert int(values[f"latency.{stage}.count"]) >= 3
    for key in (
        "frames.received",
        "frames.processed",
        "frames.dropped",
        "frames.dropped.superseded",
        "frames.dropped.bad_input",
        "frames.dropped.missed",
        "frames.dropped.model_failure",
        "rate.input_hz",
        "rate.processing_hz",
    ):
        assert key in values
    assert int(values["frames.processed"]) >= 3
    assert status.hardware_id == "cpu" or status.hardware_id.startswith("cuda")
    # Once idle, every frame that arrived was processed or dropped with a reason (missed ones never arrived).
    assert probe.wait(lambda: accounted(probe.node.statistics()))
    snap = probe.node.statistics()  # the same figures from Python
    assert snap.processed >= int(values["frames.processed"])
    assert 0 < snap.latency["network"].p50 <= snap.latency["network"].p95 <= snap.latency["network"].max
    assert snap.latency["end_to_end"].p50 > 0  # header stamp to publication, on the node clock


def test_latency_budget_warns(probe, canvas):
    assert all(r.successful for r in probe.set(diagnostics__latency_budget_ms=0.1))
    try:
        probe.send(frame_at(canvas, 0))
        count = len(probe.diagnostics)
        assert probe.wait(lambda: len(probe.diagnostics) > count + 1)
        assert probe.diagnostics[-1].level == DiagnosticStatus.WARN
        assert "over the 0.1 ms budget" in probe.diagnostics[-1].message
    finally:
        probe.set(diagnostics__latency_budget_ms=100_000.0)
    probe.send(frame_at(canvas, 0))
    count = len(probe.diagnostics)
    assert probe.wait(lambda: len(probe.diagnostics) > count + 1)
    assert probe.diagnostics[-1].level == DiagnosticStatus.OK, probe.diagnostics[-1].message


def test_parameter_rejection_keeps_the_old_value(probe, tmp_path):
    bad = {
        "detector__window_size": 4,  # even
        "detector__score_threshold": 1.5,  # out of range
        "model": "alike-xl",
        "weights": str(tmp_path / "missing.pth"),
        "input__transport": "carrier-pigeon",
        "matching__ratio": 0.0,
        "warmup_sizes": "VGA",
    }
    for name, value in bad.items():
        before = probe.node.get_parameter(name.replace("__", ".")).value
        (result,) = probe.set(**{name: value})
        assert not result.successful and result.reason, name
        assert probe.node.get_parameter(name.replace("__", ".")).value == before
    (result,) = probe.set(output__qos__depth=3)  # read-only
    assert not result.successful
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    (result,) = probe.set(weights=str(corrupt))
    assert not result.successful and "corrupt.pth" in result.reason


def test_parameter_service_gives_the_reason(probe):
    assert probe.set_client.wait_for_service(timeout_sec=WAIT)
    value = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=2)
    future = probe.set_client.call_async(
        SetParameters.Request(parameters=[ParameterMsg(name="detector.window_size", value=value)])
    )
    assert probe.wait(future.done)
    (result,) = future.result().results
    assert not result.successful and "window_size" in result.reason


def test_detector_and_matching_changes_apply_next_frame(probe, canvas):
    try:
        assert all(r.successful for r in probe.set(detector__max_keypoints=40))
        assert probe.send(frame_at(canvas, 0)).width == 40
        assert all(r.successful for r in probe.set(detector__top_k=25))
        assert probe.send(frame_at(canvas, 0)).width == 25
        assert all(r.successful for r in probe.set(matching__enabled=False))
        header = probe.header()
        probe.send(frame_at(canvas, 1), header=header)
        assert probe.latest("matches", header) is None
        assert all(
            r.successful for r in probe.set(input__max_side=160, detector__top_k=-1, detector__max_keypoints=500)
        )
        # The network sees 160x120; keypoints come back in pixels of the image as received.
        keypoints = decode_features(probe.send(frame_at(canvas, 0))).keypoints
        assert keypoints[:, 0].max() > 200 and keypoints[:, 1].max() > 150
    finally:
        probe.set(detector__max_keypoints=500, detector__top_k=-1, matching__enabled=True, input__max_side=0)
    assert probe.send(frame_at(canvas, 0)).width > 40


def test_a_mask_applies_from_the_next_frame_and_a_mask_of_another_size_drops_frames(probe, canvas, tmp_path):
    mask = np.full(SIZE, 255, np.uint8)
    mask[:, : SIZE[1] // 2] = 0
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    cv2.imwrite(str(tmp_path / "small.png"), mask[:-8])
    try:
        (result,) = probe.set(input__mask=str(tmp_path / "absent.png"))
        assert not result.successful and "absent.png" in result.reason
        assert all(r.successful for r in probe.set(input__mask=str(tmp_path / "mask.png")))
        keypoints = decode_features(probe.send(frame_at(canvas, 0))).keypoints
        assert len(keypoints) > 100 and keypoints[:, 0].min() >= SIZE[1] // 2 - 0.5
        assert all(r.successful for r in probe.set(input__mask=str(tmp_path / "small.png")))
        probe.send_bad(array_to_image(frame_at(canvas, 0), "mono8", probe.header()))
        assert "the mask is" in probe.node.statistics().last_error
    finally:
        probe.set(input__mask="")
    keypoints = decode_features(probe.send(frame_at(canvas, 0))).keypoints
    assert keypoints[:, 0].min() < SIZE[1] // 2


def test_model_reload_swaps_safely(probe, canvas, alike_t_weights):
    s_weights = weights_of("alike-s")
    result = probe.node.set_parameters_atomically(
        [Parameter("model", value="alike-s"), Parameter("weights", value=str(s_weights))]
    )
    try:
        assert result.successful, result.reason
        assert decode_features(probe.send(frame_at(canvas, 0))).descriptors.shape[1] == 96
        # A model that does not fit its weights is rejected and the running one stays.
        (result,) = probe.set(model="alike-n")
        assert not result.successful and "does not fit" in result.reason
        assert probe.node.get_parameter("model").value == "alike-s"
    finally:
        probe.node.set_parameters_atomically(
            [Parameter("model", value="alike-t"), Parameter("weights", value=str(alike_t_weights))]
        )
    assert decode_features(probe.send(frame_at(canvas, 0))).descriptors.shape[1] == 64


def test_other_extractors_run_behind_the_same_message_contract(probe, canvas, alike_t_weights, tmp_path):
    from alike_ros.model.residual import ResidualConfig, ResidualDescriptorNet

    cfg = ResidualConfig(channels=(4, 4, 8, 8), head=8, cnn_dim=8, refine_dim=8)
    weights = tmp_path / "sift-residual.pth"
    config = {**cfg.__dict__, "channels": list(cfg.channels)}
    state = ResidualDescriptorNet(cfg).state_dict()
    torch.save({"state_dict": state, "model": "sift-residual", "step": 0, "config": config}, weights)
    result = probe.node.set_parameters_atomically(
        [Parameter("model", value="sift-residual"), Parameter("weights", value=str(weights))]
    )
    try:
        assert result.successful, result.reason
        features = decode_features(probe.send(frame_at(canvas, 0)))
        assert features.descriptors.shape[1] == 16 and len(features.keypoints) > 0
        assert np.all(np.diff(features.scores) <= 0)
        (result,) = probe.set(runtime="onnxruntime")  # what sift-residual cannot do is refused with the reason
        assert not result.successful and "runtime torch" in result.reason
    finally:
        probe.node.set_parameters_atomically(
            [Parameter("model", value="alike-t"), Parameter("weights", value=str(alike_t_weights))]
        )
    assert decode_features(probe.send(frame_at(canvas, 0))).descriptors.shape[1] == 64


@pytest.mark.parametrize(("model", "dim"), [("unsuperpoint", 128), ("mdnet", 64)])
def test_a_model_by_name_alone_runs_on_its_bundled_weights(probe, canvas, alike_t_weights, model, dim):
    """Issue 12's models: `model` set with no weights file, as a user switches in a running node; the detector
    settings still select (top_k caps what a model without NMS keeps)."""
    result = probe.node.set_parameters_atomically([Parameter("model", value=model), Parameter("weights", value="")])
    try:
        assert result.successful, result.reason
        assert all(r.successful for r in probe.set(detector__top_k=50, detector__score_threshold=0.0))
        features = decode_features(probe.send(frame_at(canvas, 0)))
        assert features.descriptors.shape == (50, dim) and np.all(np.diff(features.scores) <= 0)
    finally:
        probe.set(detector__top_k=-1, detector__score_threshold=0.2)
        probe.node.set_parameters_atomically(
            [Parameter("model", value="alike-t"), Parameter("weights", value=str(alike_t_weights))]
        )
    assert decode_features(probe.send(frame_at(canvas, 0))).descriptors.shape[1] == 64


def test_vins_output(probe, canvas):
    info = CameraInfo(width=SIZE[1], height=SIZE[0], distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [200.0, 0.0, 160.0, 0.0, 200.0, 120.0, 0.0, 0.0, 1.0]
    assert all(r.successful for r in probe.set(output__vins_layout="vins_fusion"))
    try:
        assert probe.wait(lambda: probe.info_pub.get_subscription_count() > 0)
        probe.info_pub.publish(info)
        assert probe.wait(lambda: probe.node.streams[""].camera is not None)
        first, second = probe.header(), probe.header()
        dt = (Time.from_msg(second.stamp) - Time.from_msg(first.stamp)).nanoseconds / 1e9
        probe.send(frame_at(canvas, 0), header=first)
        features = decode_features(probe.send(frame_at(canvas, 1), header=second))
        assert probe.wait(lambda: probe.latest("features_vins", second) is not None)
        vins = probe.latest("features_vins", second)
        names = [c.name for c in vins.channels]
        assert names == [
            "id_of_point",
            "camera_id",
            "u_of_point",
            "v_of_point",
            "velocity_x_of_point",
            "velocity_y_of_point",
        ]
        ch = {c.name: np.array(c.values) for c in vins.channels}
        points = np.array([(p.x, p.y, p.z) for p in vins.points])
        np.testing.assert_allclose(ch["u_of_point"], features.keypoints[:, 0], atol=1e-3)
        np.testing.assert_allclose(points[:, 0], (features.keypoints[:, 0] - 160.0) / 200.0, atol=1e-5)
        np.testing.assert_allclose(points[:, 2], 1.0)
        moving = (ch["velocity_x_of_point"] != 0) | (ch["velocity_y_of_point"] != 0)
        assert moving.sum() > 30
        velocity = np.stack((ch["velocity_x_of_point"], ch["velocity_y_of_point"]), axis=1)[moving]
        np.testing.assert_allclose(np.median(velocity, axis=0) * dt, SHIFT / 200.0, atol=0.3 / 200.0)
    finally:
        probe.set(output__vins_layout="none")


def test_end_to_end_latency_uses_sim_time(probe, canvas):
    assert all(r.successful for r in probe.node.set_parameters([Parameter("use_sim_time", value=True)]))
    try:
        probe.set(diagnostics__window=1)
        now = Clock()
        now.clock.sec = 5000
        probe.clock_pub.publish(now)
        assert probe.wait(lambda: probe.node.get_clock().now().nanoseconds == 5000 * 10**9)
        header = probe.header(sec=4999)
        header.stamp.nanosec = 750_000_000
        probe.send(frame_at(canvas, 0), header=header)
        # the figures are counted just after publishing: the features may arrive first
        assert probe.wait(lambda: probe.node.statistics().latency["end_to_end"].p50 == pytest.approx(250.0))
    finally:
        probe.node.set_parameters([Parameter("use_sim_time", value=False)])
        probe.set(diagnostics__window=300)


def test_drops_under_a_slow_model(probe, canvas):
    pipeline = probe.node.streams[""].pipeline
    real = pipeline.extractor

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    pipeline.extractor = Patched(real, slow)
    try:
        before = probe.node.statistics()
        headers = [probe.header() for _ in range(12)]
        for header in headers:
            probe.image_pub.publish(array_to_image(frame_at(canvas, 0), "mono8", header))
            time.sleep(0.02)
        assert probe.wait(lambda: probe.features_for(headers[-1]) is not None), "the newest frame was not processed"
    finally:
        pipeline.extractor = real
    assert probe.wait(lambda: accounted(probe.node.statistics()))  # nothing silently lost
    after = probe.node.statistics()
    processed = after.processed - before.processed
    superseded = after.dropped["superseded"] - before.dropped["superseded"]
    assert superseded > 0 and processed < len(headers)


def test_missed_frames_are_counted_from_sequence_gaps(probe):
    before = probe.node.statistics().dropped["missed"]
    publisher = {"data": b"a publisher we never heard of"}
    for seq in (5, 6, 9, 10):  # 7 and 8 never arrived
        probe.node.streams[""].count_missed({"publisher_gid": publisher, "publication_sequence_number": seq})
    assert probe.node.statistics().dropped["missed"] - before == 2


def test_auto_input_reliability_follows_the_publishers(probe, canvas):
    assert all(r.successful for r in probe.set(input__qos__reliability="auto"))
    try:
        assert probe.wait(lambda: probe.node.streams[""].input_reliability == "reliable"), (
            "the probe's publishers are reliable"
        )
        best_effort = probe.probe.create_publisher(
            Image, "image", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        )
        # one best-effort publisher: a reliable subscription would never match it
        assert probe.wait(lambda: probe.node.streams[""].input_reliability == "best_effort")
        probe.wait_connected(best_effort)
        header = probe.header()
        best_effort.publish(array_to_image(frame_at(canvas, 0), "mono8", header))
        assert probe.wait(lambda: probe.features_for(header) is not None), "a best-effort camera's frame was lost"
        count = len(probe.diagnostics)
        assert probe.wait(lambda: len(probe.diagnostics) > count + 1)
        values = {kv.key: kv.value for kv in probe.diagnostics[-1].values}
        assert values["input.qos.reliability"] == "best_effort"
        assert sorted(values["input.publishers"].split(", ")) == ["best_effort", "reliable"]
        probe.probe.destroy_publisher(best_effort)  # the camera goes away: back to reliable
        assert probe.wait(lambda: probe.node.streams[""].input_reliability == "reliable")
    finally:
        assert all(r.successful for r in probe.set(input__qos__reliability="reliable"))
        probe.wait_connected(probe.image_pub)
    probe.send(frame_at(canvas, 1))


def test_reliable_input_with_a_best_effort_camera_names_the_cause(probe):
    best_effort = probe.probe.create_publisher(
        Image, "image", QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    )
    assert all(r.successful for r in probe.set(diagnostics__stale_timeout=0.1))
    try:
        assert probe.wait(lambda: len(probe.node.streams[""].offered_reliability()) == 2)
        assert probe.wait(lambda: "cannot match" in probe.node.statistics().message)
        snap = probe.node.statistics()
        assert snap.level == Level.ERROR
        assert "set input.qos.reliability to auto or best_effort" in snap.message
        assert probe.node.streams[""].input_reliability == "reliable"  # an explicit setting is never overridden
    finally:
        probe.set(diagnostics__stale_timeout=3.0)
        probe.probe.destroy_publisher(best_effort)


# ---------------------------------------------------------------- several cameras, one model


class Rig:
    """One node serving cameras `left` and `right`, and a probe that feeds and records each."""

    CAMERAS = ("left", "right")

    def __init__(self, context: Context, weights: Path, namespace: str = "/rig_test", **extra):
        overrides = {
            **{"cameras": ",".join(self.CAMERAS), "weights": str(weights), "warmup_frames": 1},
            **{"diagnostics.period": 0.3, "detector.max_keypoints": 500, "input.qos.reliability": "reliable"},
            **{k.replace("__", "."): v for k, v in extra.items()},
        }
        self.namespace = namespace
        self.node, self.probe = extractor_and_probe(context, namespace, overrides, "rig_probe")
        self.cond = threading.Condition()
        topics = [f"{c}/{t}" for c in self.CAMERAS for t in ("features", "matches")] + ["left/stereo_matches"]
        self.received: dict[str, list] = {topic: [] for topic in topics}
        self.statuses: list[DiagnosticStatus] = []
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pubs = {c: self.probe.create_publisher(Image, f"{c}/image", reliable) for c in self.CAMERAS}
        self.info_pubs = {
            c: self.probe.create_publisher(CameraInfo, f"{c}/camera_info", reliable) for c in self.CAMERAS
        }
        for topic in self.received:
            self.probe.create_subscription(PointCloud2, topic, lambda m, t=topic: self._record(t, m), reliable)
        for camera in self.CAMERAS:
            topic = f"{camera}/features_vins"
            self.received[topic] = []
            self.probe.create_subscription(PointCloud, topic, lambda m, t=topic: self._record(t, m), reliable)
        self.probe.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.executors = spin_apart(context, self.node, self.probe)
        for camera, pub in self.image_pubs.items():
            assert self.wait(lambda p=pub: p.get_subscription_count() > 0)
            assert self.wait(lambda c=camera: self.node.streams[c].image_sub.get_publisher_count() > 0)
        self.stamp_ns = self.node.get_clock().now().nanoseconds

    def _record(self, topic: str, msg: PointCloud2) -> None:
        with self.cond:
            self.received[topic].append(msg)
            self.cond.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.cond:
            self.statuses += [s for s in msg.status if s.name.startswith(f"{self.namespace}/extractor")]
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], bool]) -> bool:
        return wait_notified(self.cond, predicate)

    def header(self, camera: str) -> Header:
        self.stamp_ns += 10_000_000
        return Header(frame_id=f"{camera}_optical", stamp=Time(nanoseconds=self.stamp_ns).to_msg())

    def arrived(self, topic: str, stamp) -> PointCloud2:
        assert self.wait(lambda: any(m.header.stamp == stamp for m in self.received[topic])), f"no {topic}"
        return next(m for m in self.received[topic] if m.header.stamp == stamp)

    def send_pair(self, left: np.ndarray, right: np.ndarray) -> PointCloud2:
        """A left and a right image with one stamp; the pair's stereo matches (lock-step)."""
        header = self.header("left")
        self.image_pubs["left"].publish(array_to_image(left, "mono8", header))
        self.image_pubs["right"].publish(
            array_to_image(right, "mono8", Header(frame_id="right_optical", stamp=header.stamp))
        )
        return self.arrived("left/stereo_matches", header.stamp)

    def send(self, camera: str, pixels: np.ndarray) -> tuple[PointCloud2, PointCloud2]:
        """One image to `camera`; its features and matches (lock-step)."""
        header = self.header(camera)
        self.image_pubs[camera].publish(array_to_image(pixels, "mono8", header))
        found = {}
        for kind in ("features", "matches"):
            topic = f"{camera}/{kind}"
            assert self.wait(lambda t=topic: any(m.header == header for m in self.received[t])), f"no {topic}"
            found[kind] = next(m for m in self.received[topic] if m.header == header)
        return found["features"], found["matches"]

    def close(self) -> None:
        for executor in self.executors:
            executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()


@pytest.fixture(scope="module")
def rig(ros_context, alike_t_weights) -> Iterator[Rig]:
    r = Rig(ros_context, alike_t_weights)
    yield r
    r.close()


def test_two_cameras_share_one_model_and_keep_their_own_tracks_topics_and_status(rig, canvas):
    left, right = (rig.node.streams[c] for c in Rig.CAMERAS)
    assert left.pipeline.extractor is right.pipeline.extractor  # one model in memory
    assert left.image_sub.topic_name == "/rig_test/left/image" and right.features_pub.topic_name.endswith(
        "right/features"
    )
    other = np.ascontiguousarray(canvas[::-1, ::-1])  # the right camera sees another scene
    matched = {c: [] for c in Rig.CAMERAS}
    for k in range(3):  # interleaved: a shared tracker would match each frame against the other camera's
        for camera, scene_ in (("left", canvas), ("right", other)):
            features, matches = rig.send(camera, frame_at(scene_, k))
            assert features.header.frame_id == f"{camera}_optical" and features.width > 50
            matched[camera].append(matches.width)
    for camera in Rig.CAMERAS:
        assert matched[camera][0] == 0 and min(matched[camera][1:]) > 50, matched  # tracks continue per camera
    names = {f"/rig_test/extractor/{c}: alike extractor" for c in Rig.CAMERAS}
    assert rig.wait(lambda: names <= {s.name for s in rig.statuses})
    for name in names:
        values = {kv.key: kv.value for kv in [s for s in rig.statuses if s.name == name][-1].values}
        assert values["input_topic"] == f"/rig_test/{name.split('/')[3].split(':')[0]}/image"


def test_two_workers_on_the_shared_model_give_what_the_model_gives_alone(rig, canvas):
    """Frames of both cameras sent at once: two workers extract them at the same time, on one extractor."""
    images = {"left": frame_at(canvas, 7), "right": np.ascontiguousarray(frame_at(canvas, 9)[::-1])}
    assert len(rig.node._workers) == 2
    for _ in range(3):
        headers = {camera: rig.header(camera) for camera in images}
        for camera, header in headers.items():
            rig.image_pubs[camera].publish(array_to_image(images[camera], "mono8", header))
        for camera, header in headers.items():
            got = decode_features(rig.arrived(f"{camera}/features", header.stamp))
            alone = rig.node.streams[camera].pipeline.extractor(images[camera], "rgb")
            np.testing.assert_allclose(got.keypoints, alone.keypoints, atol=1e-4)
            np.testing.assert_allclose(got.descriptors, alone.descriptors, atol=1e-5)


def test_frames_of_several_cameras_batched_through_the_network_give_what_one_by_one_gives(rig, canvas):
    """The batch path of waiting frames (taken on CUDA) run on the CPU: one pass for the two cameras' frames, and the
    features each camera publishes are the extractor's on that frame alone."""
    images = {"left": frame_at(canvas, 11), "right": np.ascontiguousarray(frame_at(canvas, 13)[::-1])}
    extractor = rig.node.streams["left"].pipeline.extractor
    calls, batch = [], extractor.batch
    headers = {camera: rig.header(camera) for camera in images}
    try:
        extractor.batch = lambda *args: calls.append(args) or batch(*args)
        rig.node._serve_together(
            [(camera, array_to_image(images[camera], "mono8", headers[camera])) for camera in images]
        )
    finally:
        del extractor.batch
    assert [len(args[0]) for args in calls] == [2]
    for camera, header in headers.items():
        got = decode_features(rig.arrived(f"{camera}/features", header.stamp))
        alone = extractor(images[camera], "rgb")
        np.testing.assert_allclose(got.keypoints, alone.keypoints, atol=1e-4)
        np.testing.assert_allclose(got.descriptors, alone.descriptors, atol=1e-5)


def test_a_setting_applies_to_every_camera(rig, canvas):
    try:
        assert all(r.successful for r in rig.node.set_parameters([Parameter("detector.max_keypoints", value=40)]))
        for camera in Rig.CAMERAS:
            features, _ = rig.send(camera, frame_at(canvas, 5))
            assert 0 < features.width <= 40
    finally:
        rig.node.set_parameters([Parameter("detector.max_keypoints", value=500)])


def test_a_camera_may_set_its_own_max_side_and_transport(rig, canvas):
    image = frame_at(canvas, 3)
    extractor = rig.node.streams["left"].pipeline.extractor
    try:
        (result,) = rig.node.set_parameters([Parameter("left.input.max_side", value=96)])
        assert result.successful, result.reason
        for camera, max_side in (("left", 96), ("right", 0)):  # the right camera keeps the node's input.max_side
            features, _ = rig.send(camera, image)
            np.testing.assert_allclose(
                decode_features(features).keypoints, extractor(image, "rgb", max_side).keypoints, atol=1e-4
            )
        (result,) = rig.node.set_parameters([Parameter("left.input.max_side", value=-5)])
        assert not result.successful and "left.input.max_side" in result.reason
        (result,) = rig.node.set_parameters([Parameter("right.input.transport", value="compressed")])
        assert result.successful, result.reason
        assert rig.node.streams["right"].image_sub.topic_name == "/rig_test/right/image/compressed"
        assert rig.node.streams["left"].image_sub.topic_name == "/rig_test/left/image"
    finally:
        rig.node.set_parameters(
            [Parameter("left.input.max_side", value=-1), Parameter("right.input.transport", value="")]
        )
    assert rig.node.streams["right"].image_sub.topic_name == "/rig_test/right/image"


@pytest.fixture(scope="module")
def stereo_rig(ros_context, alike_t_weights) -> Iterator[Rig]:
    r = Rig(ros_context, alike_t_weights, "/stereo_test", stereo__pairs="left:right", stereo__max_disparity=64.0)
    yield r
    r.close()


def test_a_stereo_pair_is_matched_left_to_right_with_disparity_and_depth(stereo_rig):
    rig = stereo_rig
    left = cv2.resize(make_textured_image(), (640, 480), interpolation=cv2.INTER_CUBIC)
    disparity, fx, baseline = 7.3, 500.0, 0.1
    right = cv2.warpAffine(left, np.float32([[1, 0, -disparity], [0, 1, 0]]), (640, 480), flags=cv2.INTER_CUBIC)
    for camera, tx in (("left", 0.0), ("right", -fx * baseline)):  # rectified: P's intrinsics alike, R = I
        info = CameraInfo(width=640, height=480, k=[fx, 0.0, 320.0, 0.0, fx, 240.0, 0.0, 0.0, 1.0])
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [fx, 0.0, 320.0, tx, 0.0, fx, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        rig.info_pubs[camera].publish(info)
    assert rig.wait(lambda: np.isfinite(rig.node.rigs["left:right"].geometry.baseline))
    msg = rig.send_pair(left, right)
    rows = decode_stereo_matches(msg)
    assert len(rows) > 50
    assert np.median(np.abs(rows["disparity"] - disparity)) < 0.1
    np.testing.assert_allclose(rows["depth"], fx * baseline / rows["disparity"], rtol=1e-5)
    # self-contained: both stamps, and rows of the two `features` messages of that instant
    lf = decode_features(rig.arrived("left/features", msg.header.stamp))
    rf = decode_features(rig.arrived("right/features", msg.header.stamp))
    np.testing.assert_allclose(np.c_[rows["x0"], rows["y0"]], lf.keypoints[rows["index0"]])
    np.testing.assert_allclose(np.c_[rows["x1"], rows["y1"]], rf.keypoints[rows["index1"]])
    assert np.all(rows["stamp1_sec"] == msg.header.stamp.sec) and np.all(
        rows["stamp1_nanosec"] == msg.header.stamp.nanosec
    )
    status = "/stereo_test/extractor/left: alike extractor"
    assert rig.wait(
        lambda: any(
            s.name == status and ("stereo.pairs_matched", "0") not in [(kv.key, kv.value) for kv in s.values]
            for s in rig.statuses
        )
    )


def test_a_stereo_pair_batched_through_the_network_gives_what_one_by_one_gives(stereo_rig):
    """The batch path (taken on CUDA) run on the CPU: the same features, matches and stereo matches."""
    rig, pair = stereo_rig, stereo_rig.node.rigs["left:right"]
    left = cv2.resize(make_textured_image(), (320, 240), interpolation=cv2.INTER_CUBIC)
    right = cv2.warpAffine(left, np.float32([[1, 0, -5.0], [0, 1, 0]]), (320, 240), flags=cv2.INTER_CUBIC)
    extractor = rig.node.streams["left"].pipeline.extractor
    calls = []
    batch = extractor.batch
    try:
        extractor.batch = lambda *args: calls.append(args) or batch(*args)  # counts the batches
        pair.batched = True
        batched = decode_stereo_matches(rig.send_pair(left, right))
        pair.batched = False
        alone = decode_stereo_matches(rig.send_pair(left, right))
    finally:
        pair.batched = False
        del extractor.batch
    assert [len(args[0]) for args in calls].count(2) == 1  # one batch of the two frames (calls of one: one by one)
    assert len(batched) == len(alone) > 50
    for field in ("x0", "y0", "x1", "y1", "disparity"):
        np.testing.assert_allclose(batched[field], alone[field], atol=1e-3)


def test_a_stereo_pair_in_the_vins_fusion_layout_is_one_message_with_one_id_per_point(stereo_rig):
    rig = stereo_rig
    left = cv2.resize(make_textured_image(), (640, 480), interpolation=cv2.INTER_CUBIC)
    right = cv2.warpAffine(left, np.float32([[1, 0, -7.3], [0, 1, 0]]), (640, 480), flags=cv2.INTER_CUBIC)
    assert all(r.successful for r in rig.node.set_parameters([Parameter("output.vins_layout", value="vins_fusion")]))
    try:
        # camera_info is volatile: sent once each camera's new subscription (made by the change) hears the probe
        for camera in Rig.CAMERAS:
            assert rig.wait(lambda c=camera: rig.node.streams[c].camera_info_sub.get_publisher_count() > 0)
        for camera, tx in (("left", 0.0), ("right", -50.0)):
            info = CameraInfo(width=640, height=480, k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
            info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            info.p = [500.0, 0.0, 320.0, tx, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            rig.info_pubs[camera].publish(info)
        assert rig.wait(lambda: all(rig.node.streams[c].camera is not None for c in Rig.CAMERAS))
        stereo = decode_stereo_matches(rig.send_pair(left, right))
        vins = rig.arrived("left/features_vins", rig.received["left/stereo_matches"][-1].header.stamp)
        channels = {c.name: np.array(c.values) for c in vins.channels}
        assert list(channels) == ["id_of_point", "camera_id", "u_of_point", "v_of_point", "velocity_x_of_point",
                                  "velocity_y_of_point"]  # fmt: skip
        camera_id, ids = channels["camera_id"], channels["id_of_point"]
        lf = decode_features(rig.received["left/features"][-1])
        assert np.sum(camera_id == 0) == len(lf.keypoints) and np.sum(camera_id == 1) == len(stereo)
        np.testing.assert_array_equal(ids[camera_id == 1], lf.track_ids[stereo["index0"]].astype(np.float32))
        np.testing.assert_allclose(channels["u_of_point"][camera_id == 1], stereo["x1"])
        assert not rig.received["right/features_vins"]  # both cameras go out in the left's message
    finally:
        rig.node.set_parameters([Parameter("output.vins_layout", value="none")])


def test_a_stereo_frame_without_its_partner_is_counted_unpaired(stereo_rig):
    rig = stereo_rig
    left = cv2.resize(make_textured_image(), (640, 480), interpolation=cv2.INTER_CUBIC)
    before = rig.node.statistics("left")
    rig.image_pubs["left"].publish(array_to_image(left, "mono8", rig.header("left")))  # its right frame never comes
    # (received before the pair's left frame, which would replace it in the subscription's queue of one)
    assert rig.wait(lambda: rig.node.statistics("left").received > before.received)
    rig.send_pair(left, left)
    assert rig.node.statistics("left").dropped["unpaired"] == before.dropped["unpaired"] + 1
    assert rig.node.statistics("right").dropped["unpaired"] == 0


@pytest.mark.parametrize("cameras", ["left,left", "left,2nd", "left/,right", "/abs"])
def test_a_bad_camera_list_stops_the_start_with_the_reason(ros_context, cameras):
    with pytest.raises(ValueError, match="cameras"):
        ExtractorNode(
            context=ros_context, namespace="/bad_rig", parameter_overrides=[Parameter("cameras", value=cameras)]
        )
