"""The bag tool offline: sample bags in both storage formats, processing against ground truth, bad bags."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REFERENCE
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Float64MultiArray, Header

from alike_ros.bag import process
from alike_ros.bag.cli import main as bag_cli
from alike_ros.bag.process import camera_namespaces, process_bag
from alike_ros.bag.report import analyse, match_errors
from alike_ros.bag.sample import SampleConfig, make_sample
from alike_ros.bag.storage import BagError, open_bag, read_custom_data, write_bag
from alike_ros.model.weights import bundled_weights_path
from alike_ros.parameter_table import Settings, read_params
from alike_ros.ros.conversions import ENCODINGS, image_to_array, to_grey8
from alike_ros.ros.messages import decode_features, decode_matches, encode_matches, uint8_cosine_error_bound
from alike_ros.scene import homography, load_photo

SIZE = {"width": 256, "height": 192}


@pytest.fixture(scope="module")
def weights() -> str:
    """The bundled alike-t weights, else the upstream checkpoint of the project machines, else skip."""
    for path in (bundled_weights_path("alike-t"), REFERENCE / "weights" / "alike-t.pth"):
        if path.is_file():
            return str(path)
    pytest.skip("no alike-t weights: neither bundled nor the shared upstream checkpoint")


def settings(weights: str, **params) -> Settings:
    return Settings.from_params({"weights": weights, "device": "cpu", **params})


def messages(path: Path) -> list[tuple[str, str, int, bytes]]:
    """(topic, type, bag timestamp, CDR bytes) in bag order."""
    with open_bag(path) as reader:
        return [(c.topic, c.msgtype, t, bytes(raw)) for c, t, raw in reader.messages()]


def by_topic(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    out: dict[str, list[tuple[int, bytes]]] = {}
    for topic, _, t, raw in messages(path):
        out.setdefault(topic, []).append((t, raw))
    return out


# ---------------------------------------------------------------- sample bags, both storage formats


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("compressed", [False, True])
def test_sample_round_trip(tmp_path: Path, storage: str, compressed: bool):
    config = SampleConfig(frames=3, cameras=2, compressed=compressed, **SIZE)
    make_sample(tmp_path / "a", config, storage)
    make_sample(tmp_path / "b", config, storage)
    first = messages(tmp_path / "a")
    assert first == messages(tmp_path / "b"), "the sample is not deterministic"
    assert not list(tmp_path.glob(".*")), "staging directory left behind"

    suffix = "image_raw/compressed" if compressed else "image_raw"
    kind = CompressedImage if compressed else Image
    topics = {f"/cam{i}/{suffix}" for i in range(2)} | {f"/cam{i}/homography" for i in range(2)}
    assert {m[0] for m in first} == topics
    photo = load_photo()
    for topic, _, stamp, raw in first:
        if topic.endswith("homography"):
            continue
        msg = deserialize_message(raw, kind)
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
        truth = next(m for m in first if m[0] == topic.split("/image")[0] + "/homography" and m[2] == stamp)
        H = np.array(deserialize_message(truth[3], Float64MultiArray).data).reshape(3, 3)
        expected = cv2.warpPerspective(photo, H, (SIZE["width"], SIZE["height"]))
        if compressed:
            pixels = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
            assert np.abs(pixels.astype(int) - expected).mean() < 3  # JPEG, quality 95
        else:
            assert bytes(msg.data) == expected.tobytes()
    assert read_custom_data(tmp_path / "a")["alike_ros.sample"]["frames"] == 3


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_sample_in_every_encoding(tmp_path: Path, encoding: str, capsys):
    """`make-sample --encoding E`: the frames as a driver of E stores them, which convert back to the frame."""
    args = ["--frames", "2", "--width", "64", "--height", "48", "--encoding", encoding]
    assert bag_cli(["make-sample", str(tmp_path / "s"), *args]) == 0
    assert f"{encoding}, sqlite3" in capsys.readouterr().out
    images = [deserialize_message(raw, Image) for _, raw in by_topic(tmp_path / "s")["/camera/image_raw"]]
    truth = [
        deserialize_message(raw, Float64MultiArray).data for _, raw in by_topic(tmp_path / "s")["/camera/homography"]
    ]
    assert [(m.encoding, m.width, m.height) for m in images] == [(encoding, 64, 48)] * 2
    for msg, H in zip(images, truth, strict=True):
        expected = cv2.warpPerspective(load_photo(), np.reshape(H, (3, 3)), (64, 48))
        grey = to_grey8(*image_to_array(msg, use_cv_bridge=False)).astype(int)
        assert np.abs(grey - cv2.cvtColor(expected, cv2.COLOR_BGR2GRAY)).mean() < 5  # Bayer here: up to 3


def test_sample_encoding_errors(tmp_path: Path, capsys):
    for args, reason in (
        (["--encoding", "nv24"], "unsupported encoding 'nv24'"),
        (["--encoding", "yuv422", "--width", "63"], "yuv422 needs the width a multiple of 2"),
        (["--encoding", "mono8", "--compressed"], "a compressed sample is JPEG"),
    ):
        assert bag_cli(["make-sample", str(tmp_path / "s"), "--frames", "2", *args]) == 1
        assert reason in capsys.readouterr().err
        assert not (tmp_path / "s").exists() and not leftovers(tmp_path)


def test_sample_motion_stays_inside_the_photograph():
    """No frame shows content outside the photo, so every pixel moves exactly by the homographies."""
    photo = load_photo()
    h, w = 240, 320
    corners = np.array([[[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]], np.float64)
    for camera in range(4):
        for t in np.linspace(0, 1, 200, endpoint=False):
            H = homography(t, camera, photo.shape[:2], (h, w))
            back = cv2.perspectiveTransform(corners, np.linalg.inv(H))[0]
            assert (back >= 0).all() and (back[:, 0] <= photo.shape[1] - 1).all()
            assert (back[:, 1] <= photo.shape[0] - 1).all()


def test_camera_namespaces():
    assert camera_namespaces(["/camera/image_raw", "/cam1/image_raw/compressed", "/stereo/left"]) == {
        "/camera/image_raw": "/camera",
        "/cam1/image_raw/compressed": "/cam1",
        "/stereo/left": "/stereo/left",
    }
    assert camera_namespaces(["/image"]) == {"/image": ""}
    with pytest.raises(BagError, match="share namespace"):
        camera_namespaces(["/a/image", "/a/image_rect"])


# ---------------------------------------------------------------- processing against ground truth


@pytest.fixture(scope="module")
def processed(tmp_path_factory, weights: str) -> tuple[Path, Path]:
    """Two cameras, compressed, mcap: the sample and its processed bag (with debug images)."""
    root = tmp_path_factory.mktemp("processed")
    sample = make_sample(root / "sample", SampleConfig(frames=5, cameras=2, compressed=True, **SIZE), "mcap")
    process_bag(sample, root / "out", settings(weights), debug_image=True, progress=False)
    return sample, root / "out"


def test_process_outputs_follow_ground_truth(processed: tuple[Path, Path]):
    sample, out = processed
    inputs, outputs = by_topic(sample), by_topic(out)
    for topic, items in inputs.items():
        assert outputs[topic] == items, f"{topic} not copied unchanged"
    for ns in ("/cam0", "/cam1"):
        images = [deserialize_message(raw, CompressedImage) for _, raw in inputs[f"{ns}/image_raw/compressed"]]
        truth = [
            np.array(deserialize_message(raw, Float64MultiArray).data).reshape(3, 3)
            for _, raw in inputs[f"{ns}/homography"]
        ]
        image_times = [t for t, _ in inputs[f"{ns}/image_raw/compressed"]]
        features = outputs[f"{ns}/features"]
        matches = outputs[f"{ns}/matches"]
        debug = outputs[f"{ns}/debug_image"]
        assert [t for t, _ in features] == [t for t, _ in matches] == [t for t, _ in debug] == image_times
        for k, image in enumerate(images):
            feats_msg = deserialize_message(features[k][1], PointCloud2)
            match_msg = deserialize_message(matches[k][1], PointCloud2)
            debug_msg = deserialize_message(debug[k][1], Image)
            for msg in (feats_msg, match_msg, debug_msg):
                assert msg.header == image.header
            assert (debug_msg.width, debug_msg.height) == (SIZE["width"], SIZE["height"])
            feats = decode_features(feats_msg)
            assert len(feats.keypoints) > 100
            assert (feats.keypoints >= 0).all() and (feats.keypoints[:, 0] <= SIZE["width"] - 1).all()
            np.testing.assert_allclose(np.linalg.norm(feats.descriptors, axis=1), 1.0, atol=1e-4)
            rows = decode_matches(match_msg)
            if k == 0:
                assert len(rows) == 0
                continue
            assert len(rows) > 50
            assert (rows["stamp0_sec"] == images[k - 1].header.stamp.sec).all()
            assert (rows["stamp0_nanosec"] == images[k - 1].header.stamp.nanosec).all()
            np.testing.assert_array_equal(rows["x1"], feats.keypoints[rows["index1"], 0])
            np.testing.assert_array_equal(rows["track_id"], feats.track_ids[rows["index1"]])
            errors = match_errors(rows, truth[k - 1], truth[k])
            assert np.mean(errors < 3.0) > 0.85, f"{ns} frame {k}: {np.mean(errors < 3.0):.2f} of matches correct"
    summary = read_custom_data(out)["alike_ros.process"]
    assert {ns: cam["processed"] for ns, cam in summary["cameras"].items()} == {"/cam0": 5, "/cam1": 5}


def test_report(processed: tuple[Path, Path], tmp_path: Path, capsys):
    _, out = processed
    reports = analyse(out)
    assert set(reports) == {"/cam0", "/cam1"}
    summary = reports["/cam0"].summary(3.0)
    assert summary["frames"] == 5 and summary["ground_truth_frames"] == 4
    assert summary["accuracy_3px"] > 0.85 and summary["median_error_px"] < 1.5
    args = ["report", str(out), "--plot", str(tmp_path / "r.png"), "--video", str(tmp_path / "d.gif")]
    assert bag_cli([*args, "--json", str(tmp_path / "r.json")]) == 0
    assert "of matches within 3 px" in capsys.readouterr().out
    assert (tmp_path / "r.png").stat().st_size > 0 and (tmp_path / "d.gif").stat().st_size > 0


def test_params_file_and_raw_sqlite(tmp_path: Path, weights: str):
    """The node's params YAML drives processing: a keypoint cap, and no matches topic when matching is off."""
    (tmp_path / "params.yaml").write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: true\n"
        "    detector:\n      max_keypoints: 50\n    matching.enabled: false\n"
    )
    sample = make_sample(tmp_path / "s", SampleConfig(frames=2, **SIZE))
    argv = ["process", str(sample), str(tmp_path / "o"), "--params", str(tmp_path / "params.yaml")]
    assert bag_cli([*argv, "--weights", weights, "--device", "cpu", "--quiet"]) == 0
    outputs = by_topic(tmp_path / "o")
    assert set(outputs) == {"/camera/image_raw", "/camera/homography", "/camera/features"}
    counts = [
        len(decode_features(deserialize_message(raw, PointCloud2)).keypoints) for _, raw in outputs["/camera/features"]
    ]
    assert counts == [50, 50]
    (tmp_path / "bad.yaml").write_text("/**:\n  ros__parameters:\n    detector.window_size: 4\n")
    with pytest.raises(ValueError, match="window_size"):
        Settings.from_params(read_params(tmp_path / "bad.yaml"))


def test_params_file_descriptor_type_uint8(tmp_path: Path, weights: str):
    """`output.descriptor_type: uint8` in the params file gives UINT8 descriptors, decoded close to float32's."""
    sample = make_sample(tmp_path / "s", SampleConfig(frames=2, **SIZE))
    features = {}
    for kind in ("float32", "uint8"):
        (tmp_path / f"{kind}.yaml").write_text(f"/**:\n  ros__parameters:\n    output.descriptor_type: {kind}\n")
        argv = ["process", str(sample), str(tmp_path / kind), "--params", str(tmp_path / f"{kind}.yaml")]
        assert bag_cli([*argv, "--weights", weights, "--device", "cpu", "--quiet"]) == 0
        outputs = by_topic(tmp_path / kind)["/camera/features"]
        features[kind] = [deserialize_message(raw, PointCloud2) for _, raw in outputs]
        assert read_custom_data(tmp_path / kind)["alike_ros.process"]["settings"]["output.descriptor_type"] == kind
    assert len(features["uint8"]) == 2
    for f32, u8 in zip(features["float32"], features["uint8"], strict=True):
        field = next(f for f in u8.fields if f.name == "descriptor")
        assert (field.datatype, field.count, u8.point_step) == (PointField.UINT8, 64, 16 + 64)
        assert len(u8.data) * (16 + 4 * 64) == len(f32.data) * (16 + 64)
        a, b = decode_features(f32), decode_features(u8)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.track_ids, b.track_ids)
        cosine = (a.descriptors.astype(np.float64) * b.descriptors).sum(axis=1)
        assert 1 - cosine.min() <= uint8_cosine_error_bound(64)


def test_cameras_batched_through_the_network_give_what_one_by_one_gives(
    tmp_path: Path, weights: str, monkeypatch, batch_sizes: list[int]
):
    """On CUDA (forced here on the CPU) each instant's frames of the cameras share a network pass: the same outputs, in
    the same order, as one at a time."""
    sample = make_sample(tmp_path / "s", SampleConfig(frames=3, cameras=2, **SIZE))
    process_bag(sample, tmp_path / "alone", settings(weights), progress=False)
    monkeypatch.setattr(process, "batch_pays", lambda extractor: True)
    process_bag(sample, tmp_path / "batched", settings(weights), progress=False)
    assert [n for n in batch_sizes if n > 1] == [2, 2, 2]  # one pass per instant for both cameras
    alone, batched = messages(tmp_path / "alone"), messages(tmp_path / "batched")
    assert [m[:3] for m in batched] == [m[:3] for m in alone]  # topics, types, timestamps in the same order
    for a, b in zip(alone, batched, strict=True):
        if a[0].endswith("/features"):
            fa, fb = (decode_features(deserialize_message(m[3], PointCloud2)) for m in (a, b))
            np.testing.assert_allclose(fb.keypoints, fa.keypoints, atol=1e-4)
            np.testing.assert_allclose(fb.descriptors, fa.descriptors, atol=1e-5)
            np.testing.assert_array_equal(fb.track_ids, fa.track_ids)


# ---------------------------------------------------------------- bad bags


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_leaves_no_output(tmp_path: Path, storage: str, weights: str, capsys):
    sample = make_sample(tmp_path / "s", SampleConfig(frames=3, **SIZE), storage)
    data = next(p for p in sample.iterdir() if p.suffix in (".db3", ".mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert bag_cli(["process", str(sample), str(tmp_path / "o"), "--weights", weights, "--quiet"]) == 1
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not leftovers(tmp_path)


def test_failure_midway_leaves_no_output(tmp_path: Path, weights: str, monkeypatch):
    """An error after outputs were written (here: in the third frame) aborts and removes the partial bag."""
    import alike_ros.bag.process as process

    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return encode_matches(*args)

    monkeypatch.setattr(process, "encode_matches", failing)
    sample = make_sample(tmp_path / "s", SampleConfig(frames=4, **SIZE), "mcap")
    with pytest.raises(RuntimeError, match="disk full"):
        process_bag(sample, tmp_path / "o", settings(weights), progress=False)
    assert len(calls) == 3
    assert not (tmp_path / "o").exists() and not leftovers(tmp_path)


def write_messages(path: Path, items: list[tuple[str, str, object]], custom: dict[str, str] | None = None) -> Path:
    """A bag of (topic, type, rclpy message or CDR bytes) at 0.1 s spacing; custom: type -> msgdef."""
    with write_bag(path) as bag:
        for topic, msgtype in dict.fromkeys((t, ty) for t, ty, _ in items):
            definition = (custom[msgtype], "RIHS01_" + "ab" * 32) if msgtype in (custom or {}) else None
            bag.add_topic(topic, msgtype, definition)
        for k, (topic, _, msg) in enumerate(items):
            bag.write(topic, 10**18 + k * 10**8, msg)
    return path


def image(k: int, width: int, height: int, data: bytes | None = None) -> Image:
    photo = load_photo()
    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 10**9, k * 10**8
    pixels = photo[k * 8 : k * 8 + height, k * 8 : k * 8 + width]
    return Image(
        header=header,
        height=height,
        width=width,
        encoding="bgr8",
        step=width * 3,
        data=pixels.tobytes() if data is None else data,
    )


def test_bad_messages_are_counted_and_unknown_types_copied(tmp_path: Path, weights: str):
    blob = b"\x00\x01\x00\x00\x03\x00\x00\x00abc"
    items = [
        ("/blob", "my_msgs/msg/Blob", blob),
        ("/camera/image", "sensor_msgs/msg/Image", image(0, 160, 128)),
        ("/camera/image", "sensor_msgs/msg/Image", image(1, 160, 128, data=b"\x00" * 100)),  # size mismatch
        ("/camera/image", "sensor_msgs/msg/Image", b"\x00\x01\x00\x00garbage"),  # not CDR of an Image
        ("/camera/image", "sensor_msgs/msg/Image", image(3, 160, 128)),
        ("/camera/image", "sensor_msgs/msg/Image", image(4, 192, 128)),  # the camera changed resolution
    ]
    bag = write_messages(tmp_path / "in", items, custom={"my_msgs/msg/Blob": "uint8[] data"})
    summary = process_bag(bag, tmp_path / "out", settings(weights), progress=False)
    cam = summary["cameras"]["/camera"]
    assert cam["frames"] == 5 and cam["processed"] == 3
    assert cam["skipped"] == {"bad image": 1, "bad message": 1}
    assert cam["tracker_resets"] == {"image size changed": 1}
    outputs = by_topic(tmp_path / "out")
    assert outputs["/blob"] == [(10**18, blob)]
    assert len(outputs["/camera/features"]) == 3
    last = decode_matches(deserialize_message(outputs["/camera/matches"][-1][1], PointCloud2))
    assert len(last) == 0  # no matches across the size change
    second = decode_matches(deserialize_message(outputs["/camera/matches"][1][1], PointCloud2))
    assert len(second) > 0  # matched across the skipped frames to the last processed one


def test_clear_errors(tmp_path: Path, weights: str, capsys):
    sample = make_sample(tmp_path / "s", SampleConfig(frames=2, **SIZE))
    with pytest.raises(BagError, match="not in the bag"):
        process_bag(sample, tmp_path / "o", settings(weights), image_topics=["/nope"], progress=False)
    with pytest.raises(BagError, match="not sensor_msgs Image"):
        process_bag(sample, tmp_path / "o", settings(weights), image_topics=["/camera/homography"], progress=False)
    assert bag_cli(["process", str(tmp_path / "missing"), str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err
    shutil.copytree(sample, tmp_path / "o")
    with pytest.raises(BagError, match="exists"):
        process_bag(sample, tmp_path / "o", settings(weights), progress=False)
    assert not leftovers(tmp_path)


def test_failure_in_the_writing_thread_leaves_no_output(tmp_path: Path, weights: str, monkeypatch):
    """Writing happens behind the extraction, in a thread: its error still aborts the run and removes the bag."""
    from alike_ros.bag.storage import BagWriter

    real_write, calls = BagWriter.write, []

    def failing(self, *args):
        calls.append(args)
        if len(calls) == 5:
            raise OSError("disk full")
        real_write(self, *args)

    sample = make_sample(tmp_path / "s", SampleConfig(frames=6, **SIZE), "sqlite3")
    monkeypatch.setattr(BagWriter, "write", failing)
    with pytest.raises(OSError, match="disk full"):
        process_bag(sample, tmp_path / "o", settings(weights), progress=False)
    assert len(calls) == 5
    assert not (tmp_path / "o").exists() and not leftovers(tmp_path)
