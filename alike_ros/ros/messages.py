"""PointCloud2 layouts of `features`, `matches` and `stereo_matches` (see CONVENTIONS.md), to and from numpy.

Encoding builds one numpy structured array per message, so a row is a point and each field sits at the
offset PointField says; decoding reads the fields the message declares, never assumed offsets.

`features` descriptors go out as FLOAT32 (the unit vectors as computed) or, with
`output.descriptor_type: uint8`, as UINT8 (16 + D instead of 16 + 4 D bytes per point). The UINT8 form is a
linear quantisation with a per-row scale that the decoder never needs (see `quantise_descriptors`):

    encode:  q_i = round(127 * d_i / max_j |d_j|) + 128     (every q_i in 1..255, the largest |d_i| -> 1 or 255)
    decode:  x_i = q_i - 128;  d_i = x_i / sqrt(sum_j x_j^2)

A per-row scale always uses the full range and never clips; since the decoder re-normalises, the scale cancels.
Rounding moves each x_i by at most 0.5 while |x| >= 127, so the decoded descriptor is within an angle
asin(0.5 sqrt(D) / 127) of the original: 1 - cos <= 1 - sqrt(1 - D / (4 * 127^2)) (`uint8_cosine_error_bound`),
4.96e-4 for D = 64, 9.9e-4 for D = 128, and no component moves by more than sqrt(2 (1 - cos)), 0.032 for D = 64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from ..features import Features
from ..matching.stereo import StereoMatches
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
_DATATYPE_NAMES = {v: k for k, v in vars(PointField).items() if k.isupper() and isinstance(v, int)}

# `features` descriptor field: numpy type by `output.descriptor_type`
DESCRIPTOR_TYPES = {"float32": "<f4", "uint8": "u1"}
UINT8_OFFSET = 128  # q - UINT8_OFFSET is the signed, scaled component
UINT8_PEAK = 127  # the largest |component| of each descriptor becomes +-UINT8_PEAK before the offset


def uint8_cosine_error_bound(dim: int) -> float:
    """Largest 1 - cos(original, decoded) the UINT8 form allows for D-dimensional unit descriptors.

    The scaled vector has norm >= UINT8_PEAK and rounding moves it by at most 0.5 sqrt(D), so the angle is at
    most asin(0.5 sqrt(D) / UINT8_PEAK)."""
    return 1.0 - float(np.sqrt(1.0 - dim / (4.0 * UINT8_PEAK**2)))


def quantise_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """N x D descriptors as uint8: round(127 d / max|d|) + 128 per row (an all-zero row stays 128)."""
    d = np.asarray(descriptors, np.float32)
    if not np.isfinite(d).all():
        raise ValueError("descriptors hold NaN or infinite values; they cannot be quantised")
    if d.size == 0:
        return np.full(d.shape, UINT8_OFFSET, np.uint8)
    peak = np.abs(d).max(axis=1, keepdims=True)
    scale = np.divide(UINT8_PEAK, peak, out=np.zeros_like(peak), where=peak > 0)
    return (np.clip(np.rint(d * scale), -UINT8_PEAK, UINT8_PEAK) + UINT8_OFFSET).astype(np.uint8)


def dequantise_descriptors(quantised: np.ndarray) -> np.ndarray:
    """N x D uint8 descriptors back to float32 unit vectors: (q - 128) / |q - 128| (an all-128 row: zeros)."""
    x = np.asarray(quantised).astype(np.float32) - UINT8_OFFSET
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def features_dtype(descriptor_dim: int, descriptor_type: str = "float32") -> np.dtype:
    if descriptor_type not in DESCRIPTOR_TYPES:
        raise ValueError(f"descriptor_type must be one of {', '.join(DESCRIPTOR_TYPES)}; got {descriptor_type!r}")
    return np.dtype(
        [
            ("x", "<f4"),
            ("y", "<f4"),
            ("score", "<f4"),
            ("track_id", "<u4"),
            ("descriptor", DESCRIPTOR_TYPES[descriptor_type], (descriptor_dim,)),
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


STEREO_MATCHES_DTYPE = np.dtype(
    [
        ("stamp0_sec", "<i4"),  # the left frame's header stamp (also the message's)
        ("stamp0_nanosec", "<u4"),
        ("stamp1_sec", "<i4"),  # the right frame's header stamp
        ("stamp1_nanosec", "<u4"),
        ("index0", "<u4"),  # row in the left frame's `features` message
        ("index1", "<u4"),  # row in the right frame's `features` message
        ("x0", "<f4"),  # the left keypoint
        ("y0", "<f4"),
        ("x1", "<f4"),  # the right keypoint
        ("y1", "<f4"),
        ("similarity", "<f4"),  # cosine similarity of the two descriptors
        ("disparity", "<f4"),  # x_left - x_right, pixels: measured on the images where refined
        ("depth", "<f4"),  # fx * baseline / disparity from the right camera_info's P; NaN where unknown
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


def encode_features(header: Header, frame: TrackedFrame, descriptor_type: str = "float32") -> PointCloud2:
    """The `features` message; descriptor_type "uint8" quantises the descriptors (see the module's docstring)."""
    feats = frame.features
    rows = np.empty(len(feats), dtype=features_dtype(feats.descriptors.shape[1], descriptor_type))
    rows["x"], rows["y"] = feats.keypoints[:, 0], feats.keypoints[:, 1]
    rows["score"] = feats.scores
    rows["track_id"] = frame.track_ids
    rows["descriptor"] = quantise_descriptors(feats.descriptors) if descriptor_type == "uint8" else feats.descriptors
    return to_point_cloud(header, rows)


def encode_matches(header: Header, previous_stamp_ns: int | None, frame: TrackedFrame) -> PointCloud2:
    """`previous_stamp_ns`: the header stamp of the frame matched against (None only when nothing matched)."""
    rows = np.empty(len(frame.matches), dtype=MATCHES_DTYPE)
    if len(rows):
        i0, i1 = frame.matches.indices.T
        rows["stamp0_sec"], rows["stamp0_nanosec"] = divmod(previous_stamp_ns, 10**9)
        rows["index0"], rows["index1"] = i0, i1
        rows["x0"], rows["y0"] = frame.previous.keypoints[i0].T
        rows["x1"], rows["y1"] = frame.features.keypoints[i1].T
        rows["similarity"] = frame.matches.similarity
        rows["track_id"] = frame.track_ids[i1]
    return to_point_cloud(header, rows)


def encode_stereo_matches(
    header: Header,
    right_stamp_ns: int,
    left: Features,
    right: Features,
    matches: StereoMatches,
    depth: np.ndarray | None,
) -> PointCloud2:
    """`header`: the left frame's; `depth`: one per match, or None where the geometry is unknown."""
    rows = np.empty(len(matches), dtype=STEREO_MATCHES_DTYPE)
    if len(rows):
        i0, i1 = matches.indices.T
        rows["stamp0_sec"], rows["stamp0_nanosec"] = header.stamp.sec, header.stamp.nanosec
        rows["stamp1_sec"], rows["stamp1_nanosec"] = divmod(right_stamp_ns, 10**9)
        rows["index0"], rows["index1"] = i0, i1
        rows["x0"], rows["y0"] = left.keypoints[i0].T
        rows["x1"], rows["y1"] = right.keypoints[i1].T
        rows["similarity"] = matches.similarity
        rows["disparity"] = matches.disparity
        rows["depth"] = np.nan if depth is None else depth
    return to_point_cloud(header, rows)


def decode_stereo_matches(msg: PointCloud2) -> np.ndarray:
    """Stereo matches as a structured array with the STEREO_MATCHES_DTYPE fields (native byte order)."""
    return _decode_rows(msg, STEREO_MATCHES_DTYPE, "stereo matches")


@dataclass
class DecodedFeatures:
    keypoints: np.ndarray  # N x 2 float32
    scores: np.ndarray  # N
    track_ids: np.ndarray  # N uint32
    descriptors: np.ndarray  # N x D float32, unit length


def decode_features(msg: PointCloud2) -> DecodedFeatures:
    """Either descriptor datatype: FLOAT32 as sent, UINT8 dequantised to float32 unit vectors."""
    rows = from_point_cloud(msg)
    names = set(rows.dtype.names or ())
    missing = {"x", "y", "score", "track_id", "descriptor"} - names
    if missing:
        raise ValueError(f"not a features message: missing fields {sorted(missing)}")
    datatype, dim = next((f.datatype, f.count) for f in msg.fields if f.name == "descriptor")
    if datatype not in (PointField.FLOAT32, PointField.UINT8):
        raise ValueError(
            f"features field 'descriptor' has datatype {_DATATYPE_NAMES.get(datatype, datatype)} ({datatype}); "
            "expected FLOAT32 or UINT8 (quantised)"
        )
    descriptors = rows["descriptor"].reshape(len(rows), dim)  # by the field's count: an empty message has no -1
    if datatype == PointField.UINT8:
        descriptors = dequantise_descriptors(descriptors)
    descriptors = descriptors.astype(np.float32)
    return DecodedFeatures(
        keypoints=np.stack((rows["x"], rows["y"]), axis=1).astype(np.float32),
        scores=rows["score"].astype(np.float32),
        track_ids=rows["track_id"].astype(np.uint32),
        descriptors=descriptors,
    )


def decode_matches(msg: PointCloud2) -> np.ndarray:
    """Matches as a structured array with the MATCHES_DTYPE fields (native byte order)."""
    return _decode_rows(msg, MATCHES_DTYPE, "matches")


def _decode_rows(msg: PointCloud2, dtype: np.dtype, kind: str) -> np.ndarray:
    rows = from_point_cloud(msg)
    missing = set(dtype.names) - set(rows.dtype.names or ())
    if missing:
        raise ValueError(f"not a {kind} message: missing fields {sorted(missing)}")
    out = np.empty(len(rows), dtype=dtype.newbyteorder("="))
    for name in dtype.names:
        out[name] = rows[name]
    return out
