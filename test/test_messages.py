"""The `features` message: float32 and uint8 descriptors (`output.descriptor_type`), their sizes and bad data."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the messages are ROS messages")

from rclpy.serialization import serialize_message  # noqa: E402
from sensor_msgs.msg import PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from alike_ros import parameter_table  # noqa: E402
from alike_ros.extractor import Features  # noqa: E402
from alike_ros.matching.matcher import Matches  # noqa: E402
from alike_ros.matching.tracker import TrackedFrame  # noqa: E402
from alike_ros.ros.messages import (  # noqa: E402
    decode_features,
    dequantise_descriptors,
    encode_features,
    quantise_descriptors,
    to_point_cloud,
    uint8_cosine_error_bound,
)
from alike_ros.ros.parameter_descriptors import descriptor  # noqa: E402

RNG = np.random.default_rng(11)


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def hard_descriptors(dim: int, count: int = 3000) -> np.ndarray:
    """Unit vectors of several shapes: dense gaussian, sparse, one-hot, all components equal, one large peak."""
    dense = RNG.normal(size=(count, dim))
    sparse = RNG.normal(size=(count, dim)) * (RNG.random((count, dim)) < 0.1)
    sparse[:, 0] += 1e-3  # no all-zero row
    one_hot = np.eye(dim)
    flat = np.where(RNG.random((8, dim)) < 0.5, -1.0, 1.0)
    peaked = RNG.normal(size=(count, dim)) * 0.05
    peaked[:, 3] = 1.0
    return unit(np.concatenate((dense, sparse, one_hot, flat, peaked)))


def frame_with(descriptors: np.ndarray) -> TrackedFrame:
    n = len(descriptors)
    feats = Features(
        keypoints=RNG.uniform(0, 640, (n, 2)).astype(np.float32),
        scores=np.sort(RNG.random(n).astype(np.float32))[::-1].copy(),
        descriptors=np.ascontiguousarray(descriptors, np.float32),
        image_size=(480, 640),
    )
    ids = RNG.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    none = Matches(np.zeros((0, 2), np.int64), np.zeros(0, np.float32))
    return TrackedFrame(feats, ids, np.ones(n, np.int64), none, None)


def header() -> Header:
    h = Header(frame_id="camera")
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


def descriptor_field(msg) -> PointField:
    return next(f for f in msg.fields if f.name == "descriptor")


@pytest.mark.parametrize("dim", [64, 96, 128])
def test_float32_round_trip_is_exact(dim: int):
    frame = frame_with(hard_descriptors(dim, 200))
    msg = encode_features(header(), frame)  # float32 is the default
    assert (descriptor_field(msg).datatype, descriptor_field(msg).count) == (PointField.FLOAT32, dim)
    decoded = decode_features(msg)
    np.testing.assert_array_equal(decoded.descriptors, frame.features.descriptors)
    np.testing.assert_array_equal(decoded.keypoints, frame.features.keypoints)
    np.testing.assert_array_equal(decoded.scores, frame.features.scores)
    np.testing.assert_array_equal(decoded.track_ids, frame.track_ids)
    assert decoded.descriptors.dtype == np.float32


@pytest.mark.parametrize("dim", [64, 96, 128])
def test_uint8_round_trip_within_the_documented_bound(dim: int):
    frame = frame_with(hard_descriptors(dim))
    msg = encode_features(header(), frame, "uint8")
    field = descriptor_field(msg)
    assert (field.datatype, field.count, msg.point_step) == (PointField.UINT8, dim, 16 + dim)
    decoded = decode_features(msg)
    # everything but the descriptors travels exactly
    np.testing.assert_array_equal(decoded.keypoints, frame.features.keypoints)
    np.testing.assert_array_equal(decoded.scores, frame.features.scores)
    np.testing.assert_array_equal(decoded.track_ids, frame.track_ids)
    d, r = frame.features.descriptors.astype(np.float64), decoded.descriptors.astype(np.float64)
    assert decoded.descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), 1.0, atol=1e-6)
    bound = uint8_cosine_error_bound(dim)
    assert bound == pytest.approx(1 - np.sqrt(1 - dim / (4 * 127**2)))
    assert {64: 4.96e-4, 128: 9.92e-4}.get(dim, bound) == pytest.approx(bound, rel=1e-3)
    cosine_error = 1 - (d * r).sum(axis=1)
    assert cosine_error.max() <= bound + 1e-7
    assert np.abs(r - d).max() <= np.sqrt(2 * bound) + 1e-6
    # exact shapes: one-hot and +-1/sqrt(D) vectors are representable without error
    exact = slice(2 * 3000, 2 * 3000 + dim + 8)
    np.testing.assert_allclose(r[exact], d[exact], atol=1e-6)


def test_uint8_follows_the_documented_formula_from_the_raw_bytes():
    """What a C++ consumer does: read D bytes at the field's offset, x = q - 128, divide by |x|."""
    d = unit([[0.6, -0.8, 0.0, 0.0], [0.1, 0.2, -0.3, 0.05]])
    q = quantise_descriptors(d)
    np.testing.assert_array_equal(q[0], [223, 1, 128, 128])  # round(127 * 0.6 / 0.8) = 95
    expected = np.rint(127 * d[1] / np.abs(d[1]).max()) + 128
    np.testing.assert_array_equal(q[1], expected)
    msg = encode_features(header(), frame_with(d), "uint8")
    field = descriptor_field(msg)
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.width, msg.point_step)
    x = raw[:, field.offset : field.offset + field.count].astype(np.float64) - 128
    by_hand = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(decode_features(msg).descriptors, by_hand, atol=1e-7)
    np.testing.assert_allclose(dequantise_descriptors(q), by_hand, atol=1e-7)


def test_uint8_edge_cases():
    assert dequantise_descriptors(quantise_descriptors(np.zeros((2, 8)))).tolist() == np.zeros((2, 8)).tolist()
    with pytest.raises(ValueError, match="NaN"):
        quantise_descriptors(np.full((1, 8), np.nan))
    for kind in ("float32", "uint8"):  # a frame without keypoints (a blank image)
        empty = decode_features(encode_features(header(), frame_with(np.zeros((0, 64))), kind))
        assert empty.descriptors.shape == (0, 64) and empty.keypoints.shape == (0, 2)
    with pytest.raises(ValueError, match="float32, uint8"):
        encode_features(header(), frame_with(hard_descriptors(64, 2)), "float16")


@pytest.mark.parametrize(("numpy_type", "name"), [("<f8", "FLOAT64"), ("i1", "INT8"), ("<u2", "UINT16")])
def test_a_descriptor_field_of_another_datatype_is_rejected(numpy_type: str, name: str):
    fields = [("x", "<f4"), ("y", "<f4"), ("score", "<f4"), ("track_id", "<u4"), ("descriptor", numpy_type, (64,))]
    rows = np.zeros(3, np.dtype(fields))
    rows["descriptor"] = 1
    with pytest.raises(ValueError, match=rf"'descriptor' has datatype {name}.*FLOAT32 or UINT8"):
        decode_features(to_point_cloud(header(), rows))


@pytest.mark.parametrize("dim", [64, 128])
def test_uint8_shrinks_the_message_as_the_layout_says(dim: int):
    n = 2000
    frame = frame_with(hard_descriptors(dim, n)[:n])
    f32, u8 = encode_features(header(), frame), encode_features(header(), frame, "uint8")
    assert len(f32.data) == n * (16 + 4 * dim) and len(u8.data) == n * (16 + dim)
    big, small = len(serialize_message(f32)), len(serialize_message(u8))
    # the serialised messages are the point data plus a header and field list of well under 1 kB
    assert 0 < big - n * (16 + 4 * dim) < 1024 and 0 < small - n * (16 + dim) < 1024
    assert big / small == pytest.approx((16 + 4 * dim) / (16 + dim), rel=0.01)  # 3.4x for D = 64
    if dim == 64:
        assert big > 540_000 and small < 165_000


def test_the_parameter_is_validated_and_live():
    param = parameter_table.BY_NAME["output.descriptor_type"]
    assert param.default == "float32" and param.spec.choices == ("float32", "uint8") and not param.read_only
    assert "uint8" in descriptor(param).additional_constraints
    parameter_table.validate({**parameter_table.DEFAULTS, "output.descriptor_type": "uint8"})
    with pytest.raises(ValueError, match=r"output.descriptor_type must be one of float32, uint8; got 'float16'"):
        parameter_table.validate({**parameter_table.DEFAULTS, "output.descriptor_type": "float16"})
    # applies from the next frame: neither a model reload nor a new subscription
    assert "output.descriptor_type" not in parameter_table.MODEL_KEYS | parameter_table.INPUT_KEYS
