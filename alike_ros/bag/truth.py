"""The ground truth a bag can carry: `NS/homography` topics (see `bag make-sample`), by bag timestamp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message
from std_msgs.msg import Float64MultiArray

from .storage import READ_ERRORS, BagError, open_bag

HOMOGRAPHY_TYPE = "std_msgs/msg/Float64MultiArray"


def stamp_ns(sec: int, nanosec: int) -> int:
    return int(sec) * 10**9 + int(nanosec)


def read_truth(path: Path, namespaces: list[str]) -> tuple[dict[str, dict[int, np.ndarray]], str]:
    """Ground-truth homographies by namespace and bag timestamp, and a note when `path` has none.

    Only `NS/homography` topics of type std_msgs/Float64MultiArray with 9 values are read: rosbags reads
    every topic of the bag when given no connection, so a bag without them reads nothing."""
    truth: dict[str, dict[int, np.ndarray]] = {ns: {} for ns in namespaces}
    topics = {f"{ns}/homography": ns for ns in namespaces}
    with open_bag(path) as reader:
        conns = [c for c in reader.connections if c.topic in topics and c.msgtype == HOMOGRAPHY_TYPE]
        if not conns:
            return truth, f"{path} has no NS/homography topic ({HOMOGRAPHY_TYPE}) for {', '.join(topics)}"
        try:
            for conn, timestamp, raw in reader.messages(conns):
                data = np.asarray(deserialize_message(raw, Float64MultiArray).data, np.float64)
                if data.size != 9:
                    raise BagError(f"{conn.topic} in {path} holds {data.size} values, not a 3x3 homography")
                truth[topics[conn.topic]][timestamp] = data.reshape(3, 3)
        except READ_ERRORS as exc:
            raise BagError(f"{path} is damaged: {exc}") from exc
    return truth, ""
