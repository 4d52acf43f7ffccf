"""PointCloud2 layouts of `features` and `matches` (see CONVENTIONS.md), to and from numpy.

Encoding builds one numpy structured array per message, so a row is a point and each field sits at the
offset PointField says; decoding reads the fields the message declares, never assumed offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from ..matching.tracker import TrackedFrame

_TO_NUMPY = {
    PointField.INT8: np.int8,
    PointField.UINT8: np.uint8,
    PointField.INT16: np.int16,
    PointField.UINT16: np.uint16,
    PointField.INT32: np.int32,
    PointField.UINT32: np.uint32,
    PointField.FLOAT32: np.float32,
    PointField.FLOAT64: np.float64,
}
_TO_DATATYPE = {np.dtype(v): k for k, v in _TO_NUMPY.items()}


def features_dtype(descriptor_dim: int) -> np.dtype:
    return np.dtype(
        [
            ("x", "<f4"),
            ("y", "<f4"),
            ("score", "<f4"),
            ("track_id", "<u4"),
            ("descriptor", "<f4", (descriptor_dim,)),
        ]
    )


MATCHES_DTYPE = np.dtype(
    [
        ("stamp0_sec", "<i4"),  # previous frame's header stamp
        ("stamp0_nanosec", "<u4"),
        ("index0", "<u4"),  # row in the previous frame's `features` message
        ("index1", "<u4"),  # row in this frame's `features` message
        ("x0", "<f4"),
        ("y0", "<f4"),
        ("x1", "<f4"),
        ("y1", "<f4"),
        ("similarity", "<f4"),  # cosine similarity of the two descriptors
        ("track_id", "<u4"),
    ]
)


def to_point_cloud(header: Header, rows: np.ndarray) -> PointCloud2:
    """An unordered (height 1) little-endian PointCloud2 with one point per row of a structured array."""
    fields = []
    for name in rows.dtype.names:
        dtype, offset = rows.dtype.fields[name][:2]
        base, shape = (dtype.base, dtype.shape) if dtype.subdtype else (dtype, ())
        count = int(np.prod(shape)) if shape else 1
        fields.append(PointField(name=name, offset=offset, datatype=_TO_DATATYPE[base.newbyteorder("=")], count=count))
    msg = PointCloud2(
        header=header,
        height=1,
        width=len(rows),
        fields=fields,
        is_bigendian=False,
        point_step=rows.dtype.itemsize,
        row_step=rows.dtype.itemsize * len(rows),
        is_dense=True,
    )
    msg.data = rows.tobytes()
    return msg


def from_point_cloud(msg: PointCloud2) -> np.ndarray:
    """The points of a PointCloud2 as a structured array with the fields the message declares."""
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        if field.datatype not in _TO_NUMPY:
            raise ValueError(f"field {field.name!r} has unknown datatype {field.datatype}")
        base = np.dtype(_TO_NUMPY[field.datatype]).newbyteorder(order)
        names.append(field.name)
        formats.append((base, (field.count,)) if field.count > 1 else base)
        offsets.append(field.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": msg.point_step})
    count = msg.width * msg.height
    data = bytes(msg.data)
    if len(data) < count * msg.point_step:
        raise ValueError(f"PointCloud2 holds {len(data)} bytes, {count} points of {msg.point_step} need more")
    return np.frombuffer(data, dtype=dtype, count=count)


def encode_features(header: Header, frame: TrackedFrame) -> PointCloud2:
    feats = frame.features
    rows = np.empty(len(feats), dtype=features_dtype(feats.descriptors.shape[1]))
    rows["x"], rows["y"] = feats.keypoints[:, 0], feats.keypoints[:, 1]
    rows["score"] = feats.scores
    rows["track_id"] = frame.track_ids
    rows["descriptor"] = feats.descriptors
    return to_point_cloud(header, rows)


def encode_matches(header: Header, previous_stamp: Time | None, frame: TrackedFrame) -> PointCloud2:
    rows = np.empty(len(frame.matches), dtype=MATCHES_DTYPE)
    if len(rows):
        i0, i1 = frame.matches.indices.T
        rows["stamp0_sec"], rows["stamp0_nanosec"] = previous_stamp.sec, previous_stamp.nanosec
        rows["index0"], rows["index1"] = i0, i1
        rows["x0"], rows["y0"] = frame.previous.keypoints[i0].T
        rows["x1"], rows["y1"] = frame.features.keypoints[i1].T
        rows["similarity"] = frame.matches.similarity
        rows["track_id"] = frame.track_ids[i1]
    return to_point_cloud(header, rows)


@dataclass
class DecodedFeatures:
    keypoints: np.ndarray  # N x 2 float32
    scores: np.ndarray  # N
    track_ids: np.ndarray  # N uint32
    descriptors: np.ndarray  # N x D float32


def decode_features(msg: PointCloud2) -> DecodedFeatures:
    rows = from_point_cloud(msg)
    names = set(rows.dtype.names or ())
    missing = {"x", "y", "score", "track_id", "descriptor"} - names
    if missing:
        raise ValueError(f"not a features message: missing fields {sorted(missing)}")
    descriptors = rows["descriptor"].astype(np.float32).reshape(len(rows), -1)
    return DecodedFeatures(
        keypoints=np.stack((rows["x"], rows["y"]), axis=1).astype(np.float32),
        scores=rows["score"].astype(np.float32),
        track_ids=rows["track_id"].astype(np.uint32),
        descriptors=descriptors,
    )


def decode_matches(msg: PointCloud2) -> np.ndarray:
    """Matches as a structured array with the MATCHES_DTYPE fields (native byte order)."""
    rows = from_point_cloud(msg)
    missing = set(MATCHES_DTYPE.names) - set(rows.dtype.names or ())
    if missing:
        raise ValueError(f"not a matches message: missing fields {sorted(missing)}")
    out = np.empty(len(rows), dtype=MATCHES_DTYPE.newbyteorder("="))
    for name in MATCHES_DTYPE.names:
        out[name] = rows[name]
    return out
