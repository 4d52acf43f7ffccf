"""The report's video: each frame with the best-scored tracks drawn, as a GIF or an MP4."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from rclpy.serialization import deserialize_message

from ...drawing import LONG_TRACK, track_colours
from ...ros.conversions import compressed_to_array, image_to_array, to_bgr8
from ..storage import READ_ERRORS, BagError, open_bag
from ..truth import stamp_ns
from .analysis import IMAGE_TYPES, MIN_TRACK, TAIL, CameraReport, Marks

VIDEO_MIN_WIDTH = 640  # smaller frames are upscaled to this width in the video


def render_frame(bgr: np.ndarray, marks: Marks | None, caption: list[str]) -> np.ndarray:
    """The frame upscaled to at least VIDEO_MIN_WIDTH, each chosen track as a dot with its tail, coloured by
    track length (OpenCV's turbo: MIN_TRACK blue-green .. LONG_TRACK and more red), under a caption band."""
    h, w = bgr.shape[:2]
    scale = VIDEO_MIN_WIDTH / w if w < VIDEO_MIN_WIDTH else 1.0
    size = (round(w * scale), round(h * scale))
    out = cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC) if scale != 1.0 else bgr.copy()
    out = (out * 0.75).astype(np.uint8)  # a little darker, so the marks stand out
    if marks is not None and len(marks.tails):
        colours = [tuple(int(c) for c in colour) for colour in track_colours(marks.lengths)]
        shift = 4  # cv2 fixed point: 1/16 pixel
        for tail, colour in zip(marks.tails, colours, strict=True):
            points = np.round(((tail + 0.5) * scale - 0.5) * (1 << shift)).astype(np.int32)
            if len(points) > 1:
                cv2.polylines(out, [points.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA, shift)
        for tail, colour in zip(marks.tails, colours, strict=True):
            point = tuple(int(v) for v in np.round(((tail[-1] + 0.5) * scale - 0.5) * (1 << shift)))
            cv2.circle(out, point, 4 << shift, (0, 0, 0), -1, cv2.LINE_AA, shift)
            cv2.circle(out, point, 3 << shift, colour, -1, cv2.LINE_AA, shift)
    line_height = 20
    band = np.full((line_height * len(caption) + 8, out.shape[1], 3), 32, np.uint8)
    for k, text in enumerate(caption):
        cv2.putText(
            band, text, (8, line_height * (k + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
        )
    return np.vstack((band, out))


def render_video(path: Path, report: CameraReport) -> list[np.ndarray]:
    """The video frames of one camera: its images (else its debug images, as they are) with the marks."""
    with open_bag(path) as reader:
        topic = report.image_topic
        if topic is None and any(c.topic == f"{report.namespace}/debug_image" for c in reader.connections):
            topic = f"{report.namespace}/debug_image"
        if topic is None:
            raise BagError(f"{path} holds no image of {report.namespace or '/'} to draw on (nor NS/debug_image)")
        conns = [c for c in reader.connections if c.topic == topic]
        order = {stamp: k for k, stamp in enumerate(sorted(report.frames))}
        frames = []
        try:
            for conn, _, raw in reader.messages(conns):
                msg = deserialize_message(raw, IMAGE_TYPES[conn.msgtype])
                stamp = stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
                if stamp not in report.frames:
                    continue  # dropped: no features
                compressed = conn.msgtype == "sensor_msgs/msg/CompressedImage"
                pixels, color = compressed_to_array(msg) if compressed else image_to_array(msg)
                stats = report.frames[stamp]
                drawn = topic.endswith("/debug_image")
                marks = None if drawn else report.marks.get(stamp)
                caption = [
                    f"{report.namespace or '/'} frame {order[stamp] + 1}/{len(order)}: {stats.keypoints} keypoints, "
                    f"{stats.matches} matches",
                    "as drawn by the extractor (debug_image)"
                    if drawn
                    else f"{len(marks.tails) if marks else 0} best-scored tracks seen in >= {MIN_TRACK} frames, "
                    f"tails of {TAIL}; colour: length {MIN_TRACK} .. {LONG_TRACK}+",
                ]
                frames.append(render_frame(to_bgr8(pixels, color), marks, caption))
        except READ_ERRORS as exc:
            raise BagError(f"{path} is damaged: {exc}") from exc
    return frames


def write_video(frames: list[np.ndarray], out: Path, fps: float = 10.0) -> None:
    """BGR frames as an animated GIF (Pillow, a matplotlib dependency) or an MP4 (OpenCV)."""
    if not frames:
        raise BagError("no frame to write: the bag has no processed image")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".gif":
        from PIL import Image as PILImage

        # one palette per frame without dithering: the photograph stays smooth and the file small
        pictures = [
            PILImage.fromarray(np.ascontiguousarray(f[..., ::-1])).quantize(
                128, method=PILImage.Quantize.FASTOCTREE, dither=PILImage.Dither.NONE
            )
            for f in frames
        ]
        pictures[0].save(out, save_all=True, append_images=pictures[1:], duration=round(1000 / fps), loop=0)
    elif out.suffix.lower() == ".mp4":
        h, w = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise BagError(f"OpenCV cannot write {out}")
        for f in frames:
            writer.write(cv2.resize(f, (w, h)) if f.shape[:2] != (h, w) else f)
        writer.release()
    else:
        raise BagError(f"unsupported video format {out.suffix!r}: use .gif or .mp4")
