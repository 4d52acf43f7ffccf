"""The extractor node: images of one or more cameras in; per camera features, matches, tracks and a debug image out,
and /diagnostics.

One model serves every camera (`cameras` parameter; ros.stream.CameraStream holds what is per camera). Subscription
callbacks only leave each frame in its camera's slot of the inbox (ros.mailbox); worker threads take the newest
frame of each camera in turn, so a slow model or a slow consumer never builds a backlog (every frame replaced unread
is counted) and no camera starves another. Where batching pays (CUDA), a worker takes every camera's waiting frame at
once and runs those of one size through the network as one batch, a stereo pair its two frames.

Parameter changes are validated, then applied between frames: detector and matching settings take effect on the next
frame, a new model is built and warmed up beside the old one and swapped in only if it loads.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from functools import partial
from types import FrameType
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.utilities import remove_ros_args
from std_msgs.msg import Header

from .. import parameter_table
from ..features import Features
from ..model.weights import WeightsError
from ..monitoring import Snapshot
from ..pipeline import FramePipeline, PipelineConfig, batch_pays, extract_in_batches
from .fastdds import camera_setting, profile_in_effect, use_large_data_profile
from .mailbox import Mailboxes
from .parameter_descriptors import descriptor
from .stereo import LEFT, RIGHT, StereoRig
from .stream import CameraStream, Converted

NODE_NAME = "extractor"
INPUT_REVIEW_PERIOD = 1.0  # s of steady time between checks of the input publishers' QoS (events come first)


class ExtractorNode(Node):
    def __init__(self, **kwargs: Any):
        self._workers: list[threading.Thread] = []  # destroy_node may run on a half-built node
        super().__init__(NODE_NAME, **kwargs)
        for p in parameter_table.PARAMETERS:
            self.declare_parameter(p.name, p.default, descriptor(p))
        names = parameter_table.camera_names(self.get_parameter("cameras").value)
        own = parameter_table.camera_parameters(names)  # each camera's overrides, declared once its name is known
        for p in own:
            self.declare_parameter(p.name, p.default, descriptor(p))
        self._names = {p.name for p in (*parameter_table.PARAMETERS, *own)}
        self._values = {name: self.get_parameter(name).value for name in self._names}
        parameter_table.validate(self._values)  # a bad params file stops the node here, with the reason
        first = FramePipeline(self._config(self._values, names[0]))
        self.get_logger().info(
            f"{self._values['model']} on {first.extractor.device}, warmed up with "
            f"{self._values['warmup_frames']} frame(s) at {self._values['warmup_sizes']}"
            + (f", for cameras {', '.join(names)}" if names != [""] else "")
        )
        pairs = parameter_table.stereo_pairs(self._values["stereo.pairs"], names)
        paired = {name for pair in pairs for name in pair}
        # What the worker serves in turn: each camera on its own, and each stereo pair as one
        self._inbox: Mailboxes[Any] = Mailboxes([n for n in names if n not in paired] + [f"{a}:{b}" for a, b in pairs])
        setting, in_effect = camera_setting(), profile_in_effect()
        self.streams: dict[str, CameraStream] = {
            name: CameraStream(
                self,
                name,
                self._sharing(first, i, self._config(self._values, name)),
                parameter_table.camera_values(self._values, name),
                partial(self._inbox.put, name),
                setting,
                in_effect,
            )
            for i, name in enumerate(names)
        }
        self.rigs: dict[str, StereoRig] = {}
        for left_name, right_name in pairs:
            left, right = self.streams[left_name], self.streams[right_name]
            rig = StereoRig(self, left, right, self._values, self._inbox.put)
            left.deliver, right.deliver = partial(rig.on_frame, LEFT), partial(rig.on_frame, RIGHT)
            left.in_stereo_pair = right.in_stereo_pair = True
            left.extra = rig.extra
            self.rigs[rig.name] = rig
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Publishers come and go without a parameter change: follow them (the events of the subscriptions call
        # the same review at once; this steady timer also runs while a bag's /clock is paused).
        self._input_review_timer = self.create_timer(
            INPUT_REVIEW_PERIOD, self._review_inputs, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self._running = True
        self.batched = False  # True: batch the frames waiting together on any device (tests; CUDA batches anyway)
        # One worker per camera or pair, up to `workers`: they share the model, each camera stays in order
        count = min(self._values["workers"], len(self.streams) - len(self.rigs))
        self._workers = [
            threading.Thread(target=self._work, name=f"alike_worker_{i}", daemon=True) for i in range(count)
        ]
        for worker in self._workers:
            worker.start()
        self._diagnostics_timer = self.create_timer(self._values["diagnostics.period"], self._publish_diagnostics)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @staticmethod
    def _config(values: dict[str, Any], camera: str) -> PipelineConfig:
        return parameter_table.pipeline_config(parameter_table.camera_values(values, camera))

    @staticmethod
    def _sharing(first: FramePipeline, index: int, config: PipelineConfig) -> FramePipeline:
        """Camera `index`'s pipeline: the first one, or one of its own (`config`) on the first one's warm extractor."""
        return first if index == 0 else FramePipeline(config, extractor=first.extractor)

    def _review_inputs(self) -> None:
        for stream in self.streams.values():
            stream.review_input_qos()

    # ---------------------------------------------------------------- worker

    def _work(self) -> None:
        while self._running:
            if self.batched or batch_pays(next(iter(self.streams.values())).pipeline.extractor):
                taken = self._inbox.take_ready(timeout=0.1)
            else:
                one = self._inbox.take(timeout=0.1)
                taken = [one] if one else []
            cameras = [(unit, item) for unit, item in taken if unit not in self.rigs]
            if len(cameras) > 1:  # a stereo pair batches its own two frames
                self._serve_together(cameras)
                taken = [(unit, item) for unit, item in taken if unit in self.rigs]
            for unit, item in taken:
                self._serve(unit, item)

    def _serve(
        self, unit: str, item: Any, converted: Converted | None = None, features: Features | None = None
    ) -> None:
        """One camera's frame (with its pixels and features when a batch made them), or one stereo pair's."""
        rig = self.rigs.get(unit)
        stream = rig.left if rig else self.streams[unit]
        try:
            if rig:
                rig.process(*item)
            else:
                stream.process(item, converted, features)
        except Exception as exc:  # never let one frame end the worker; counted with the model's failures
            stream.stats.on_dropped("model_failure", repr(exc))
            self.get_logger().error(f"{stream.label}: frame failed: {exc!r}", throttle_duration_sec=5.0)
        finally:
            self._inbox.done(unit)

    def _serve_together(self, taken: list[tuple[str, Any]]) -> None:
        """Frames of several cameras waiting together: those of one size and max_side through the network as one
        batch (where batching pays: CUDA), then each through its camera as usual."""
        streams = [self.streams[unit] for unit, _ in taken]
        converted = [stream.convert(msg) for stream, (_, msg) in zip(streams, taken, strict=True)]
        frames = [(c.pixels, c.color) if c else None for c in converted]  # None: counted by its camera
        features = extract_in_batches([stream.pipeline for stream in streams], frames)
        for (unit, msg), frame, found in zip(taken, converted, features, strict=True):
            if frame is None:
                self._inbox.done(unit)
            else:
                self._serve(unit, msg, frame, found)

    # ---------------------------------------------------------------- diagnostics

    def statistics(self, camera: str = "") -> Snapshot:
        """The figures /diagnostics reports for one camera (the node's only one by default), at this instant."""
        return self.streams[camera].statistics()

    def _publish_diagnostics(self) -> None:
        statuses = [stream.status() for stream in self.streams.values()]
        self._diagnostics_pub.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=statuses)
        )

    # ---------------------------------------------------------------- parameters

    def _on_set_parameters(self, changes: list[Parameter]) -> SetParametersResult:
        mine = {p.name: p.value for p in changes if p.name in self._names}
        if not mine:
            return SetParametersResult(successful=True)
        values = {**self._values, **mine}
        try:
            parameter_table.validate(values)
            self._apply(values, set(mine))
        except (ValueError, WeightsError) as exc:
            self.get_logger().warning(f"rejected parameter change {mine}: {exc}")
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply(self, values: dict[str, Any], changed: set[str]) -> None:
        """Make `values` current; raises (and changes nothing) when a new model cannot be loaded."""
        configs = {name: self._config(values, name) for name in self.streams}
        streams = list(self.streams.values())
        if changed & parameter_table.MODEL_KEYS:
            self.get_logger().info(f"loading {values['model']} on {values['device']} ...")
            first = FramePipeline(configs[streams[0].name])  # beside the running one, which serves frames meanwhile
            pipelines = [self._sharing(first, i, configs[stream.name]) for i, stream in enumerate(streams)]
            self.get_logger().info(f"{values['model']} loaded on {first.extractor.device}")
        else:
            pipelines = [stream.pipeline for stream in streams]
            for stream in streams:  # the shared extractor's settings (the same each time), each camera's own
                stream.pipeline.reconfigure(configs[stream.name])
        self._values = values
        for stream, pipeline in zip(streams, pipelines, strict=True):
            camera_values = parameter_table.camera_values(values, stream.name)
            stream.apply(camera_values, parameter_table.camera_changes(changed, stream.name), pipeline)
        for rig in self.rigs.values():
            rig.apply(values)
        if "diagnostics.period" in changed:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(values["diagnostics.period"], self._publish_diagnostics)

    # ---------------------------------------------------------------- shutdown

    def destroy_node(self) -> None:
        self._running = False
        for worker in self._workers:
            worker.join()  # the frame in progress finishes (its publishing may fail once shut down)
        super().destroy_node()


def _interrupt_once() -> Callable[[int, FrameType | None], None]:
    """A SIGINT handler that raises KeyboardInterrupt the first time only. `ros2 launch` (stdin not a terminal)
    and a Ctrl-C to the process group send a second SIGINT while the node shuts down: it must not end the shutdown
    with a traceback. SIGTERM and SIGKILL still end the process."""
    interrupted = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if not interrupted:
            interrupted = True
            raise KeyboardInterrupt

    return handler


def parser() -> argparse.ArgumentParser:
    table = "\n".join(f"  {p.name} (default {p.default!r}): {p.spec.help}" for p in parameter_table.PARAMETERS)
    return argparse.ArgumentParser(
        prog="ros2 run alike_ros extractor",
        description="The ALIKE extractor node: images in; features, matches, a debug image and /diagnostics out.",
        epilog="Parameters (--ros-args -p NAME:=VALUE, or --params-file FILE):\n"
        + table
        + "\nPer camera of `cameras` (a name's / as .):\n"
        + "\n".join(
            f"  CAMERA.{key} (default {spec.default!r}): {spec.help}"
            for key, spec in parameter_table.CAMERA_OVERRIDES.items()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    """`ros2 run alike_ros extractor` and `python -m alike_ros node`: both accept --ros-args."""
    # rclpy's own handler (installed by init) shuts the context down and then calls this one.
    signal.signal(signal.SIGINT, _interrupt_once())
    try:
        return _run(sys.argv if argv is None else [NODE_NAME, *argv])
    finally:
        # Interpreter shutdown gives SIGINT back its default action, termination: a late second one must not kill
        # the process on its way out.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(args: list[str]) -> int:
    logger = rclpy.logging.get_logger(NODE_NAME)
    transport = use_large_data_profile()  # before rclpy.init: Fast DDS reads it when the participant is made
    try:
        parser().parse_args(remove_ros_args(args)[1:])  # -h prints the help; a non-ROS argument: exit 2
        rclpy.init(args=args)
    except RCLError as exc:  # e.g. a params file that does not exist or is not YAML
        logger.fatal(f"cannot start: {str(exc).split(', at ')[0]}")
        return 1
    logger.info(transport)
    try:
        node = ExtractorNode()
    except (ValueError, WeightsError, ParameterException) as exc:
        logger.fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the model loads
        rclpy.try_shutdown()
        return 0
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
