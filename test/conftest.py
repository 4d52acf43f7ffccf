"""Shared fixtures. Tests that need ../shared (upstream reference data) skip with a reason when it is absent."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alike_ros.extractor import Extractor
from alike_ros.model.weights import bundled_weights_path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE = SHARED / "reference"
PHOTOS = SHARED / "data" / "photos"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the shared reference data is only on project machines)")
    return path


@pytest.fixture
def reference_dir() -> Path:
    return require(REFERENCE)


@pytest.fixture
def upstream_weights():
    """Path of an upstream checkpoint by model name, for exactness tests only."""
    return lambda model: require(REFERENCE / "weights" / f"{model}.pth")


@pytest.fixture
def bundled_weights():
    """Path of the project's own bundled weights by model name; skips if that variant ships none."""
    return lambda model: require(bundled_weights_path(model))


@pytest.fixture
def textured_image() -> np.ndarray:
    """A deterministic 240 x 320 grey image with blobs and corners, as uint8."""
    return make_textured_image()


@pytest.fixture
def batch_sizes(monkeypatch) -> list[int]:
    """The number of images of every `Extractor.batch` call the test makes (they still run; a single image's call goes
    through `batch` too)."""
    sizes: list[int] = []
    real_batch = Extractor.batch

    def counting(self, images, *args, **kwargs):
        sizes.append(len(images))
        return real_batch(self, images, *args, **kwargs)

    monkeypatch.setattr(Extractor, "batch", counting)
    return sizes


def make_textured_image(rectangles: bool = True) -> np.ndarray:
    """240 x 320 uint8: 60 gaussian blobs and, optionally, 12 bright rectangles (corners); seeded."""
    rng = np.random.default_rng(7)
    image = np.zeros((240, 320), np.float32)
    yy, xx = np.mgrid[:240, :320]
    for _ in range(60):
        cx, cy, s = rng.uniform(10, 310), rng.uniform(10, 230), rng.uniform(2, 6)
        image += rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    for _ in range(12 if rectangles else 0):
        x0, y0 = rng.integers(0, 280), rng.integers(0, 200)
        image[y0 : y0 + rng.integers(10, 40), x0 : x0 + rng.integers(10, 40)] += 0.5
    return (np.clip(image / image.max(), 0, 1) * 255).astype(np.uint8)


def write_textured_photos(folder: Path, n: int = 3) -> Path:
    """`n` small textured photos (128 x 96), for training smoke tests."""
    import cv2

    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.resize(make_textured_image(i % 2 == 0), (128, 96)))
    return folder


@pytest.fixture
def alike_t_weights() -> Path:
    """alike-t weights for behaviour tests: the bundled ones, else upstream's, else skip."""
    bundled = bundled_weights_path("alike-t")
    return bundled if bundled.is_file() else require(REFERENCE / "weights" / "alike-t.pth")


@contextmanager
def spinning_node(name: str, domain: int, namespace: str = "") -> Iterator[Any]:
    """An rclpy node in a private context on `domain`, spun by its own executor thread (as in a separate
    process): the test side of a graph whose other processes the test starts."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # read by rcl at init: this machine's graph only
    context = Context()
    try:
        rclpy.init(context=context, domain_id=domain)
    finally:
        if saved is None:
            os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE")
        else:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved
    node = Node(name, context=context, namespace=namespace)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False): a failure guard, not a timer."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
