"""Publish a bag into a live ROS 2 graph with rclpy, for machines without `ros2 bag play`.

Messages keep their bag order and spacing (scaled by --rate) and are published as the CDR bytes the bag
holds, so any type the local install knows can be replayed. `--clock` publishes bag time on /clock before
each message and at 100 Hz in between, so nodes under `use_sim_time` see the bag's time. `--record`
subscribes to given topics at the same time and writes what arrives to a new bag (receive time, in bag
time under --clock), which is how the node's live outputs are captured for `bag report` and the tests.
`--lockstep` waits after each image until the node answered on the given topics, so a slow machine
processes every frame instead of the newest only.
"""

from __future__ import annotations

import argparse
import importlib
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosbags.interfaces import QosDurability
from rosgraph_msgs.msg import Clock

from ..ros.fastdds import use_large_data_profile
from .process import IMAGE_TYPES
from .storage import READ_ERRORS, BagError, open_bag, write_bag

CLOCK_PERIOD = 0.01  # s of wall time between /clock messages while waiting for the next message
RECORD_SETTLE = 0.5  # s
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def message_class(msgtype: str) -> type:
    """The rclpy class of 'pkg/msg/Type'; ImportError/AttributeError when this install lacks it."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def parse_pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        old, sep, new = item.rpartition(":") if what == "topic:type" else item.partition(":")
        if not sep or not old or not new:
            raise ValueError(f"expected {what.upper()}, got {item!r}")
        pairs[old] = new
    return pairs


@dataclass
class ReplayStats:
    published: Counter = field(default_factory=Counter)
    recorded: Counter = field(default_factory=Counter)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    lockstep_timeouts: int = 0


class Recorder:
    """Raw subscriptions writing into a bag; runs in the executor thread, the only writer of the bag."""

    def __init__(
        self,
        node: Node,
        bag,
        topics: dict[str, str],
        now_ns: Callable[[], int],
        stats: ReplayStats,
        lockstep: list[str],
    ):
        self.count = 0  # messages on the lockstep topics only: other recorded topics must not release a wait
        self.lockstep_topics = set(lockstep)
        self._cond = threading.Condition()
        for topic, msgtype in topics.items():
            if bag is not None:
                bag.add_topic(topic, msgtype)
            node.create_subscription(
                message_class(msgtype), topic, self._callback(bag, topic, now_ns, stats), RELIABLE, raw=True
            )

    def _callback(self, bag, topic: str, now_ns: Callable[[], int], stats: ReplayStats) -> Callable[[bytes], None]:
        def on_message(raw: bytes) -> None:
            if bag is not None:
                bag.write(topic, now_ns(), raw)
            stats.recorded[topic] += 1
            if topic not in self.lockstep_topics:
                return
            with self._cond:
                self.count += 1
                self._cond.notify_all()

        return on_message

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


class Player:
    def __init__(self, node: Node, reader, topic_map: dict[str, str], topics: list[str], clock: bool, rate: float):
        if rate <= 0:
            raise ValueError(f"--rate must be > 0, got {rate}")
        self.node, self.reader, self.rate = node, reader, rate
        self.stats = ReplayStats()
        self.connections = []
        self.publishers = {}
        for conn in reader.connections:
            if topics and conn.topic not in topics:
                continue
            try:
                cls = message_class(conn.msgtype)
            except (ImportError, AttributeError, ValueError):
                self.stats.skipped_topics[conn.topic] = f"type {conn.msgtype} is not installed here"
                continue
            latched = any(q.durability == QosDurability.TRANSIENT_LOCAL for q in conn.ext.offered_qos_profiles)
            qos = QoSProfile(
                depth=100,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
            )
            if conn.topic not in self.publishers:
                self.publishers[conn.topic] = node.create_publisher(cls, topic_map.get(conn.topic, conn.topic), qos)
            self.connections.append(conn)
        if not self.connections:
            raise BagError("nothing to replay: no topic of the bag is selected and installed here")
        self.clock = node.create_publisher(Clock, "/clock", 10) if clock else None
        self.bag_now = 0
        self.stop = threading.Event()

    def image_topics(self) -> set[str]:
        return {c.topic for c in self.connections if c.msgtype in IMAGE_TYPES}

    def publish_clock(self, bag_ns: int) -> None:
        self.bag_now = bag_ns
        if self.clock is not None:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(bag_ns, 10**9)
            self.clock.publish(msg)

    def wait_until(self, wall: float, anchor: tuple[float, int], until_ns: int) -> None:
        """Sleep until the wall time, ticking /clock meanwhile: bag time runs on from the (wall, bag ns)
        anchor at the replay rate, never past `until_ns` (the next message), so /clock never goes back."""
        while (remaining := wall - time.monotonic()) > 0 and not self.stop.is_set():
            time.sleep(min(remaining, CLOCK_PERIOD))
            if self.clock is not None:
                elapsed_ns = int((time.monotonic() - anchor[0]) * 1e9 * self.rate)
                self.publish_clock(min(anchor[1] + elapsed_ns, until_ns))

    def play_once(self, lockstep: Recorder | None, lockstep_timeout: float) -> None:
        start_wall, start_bag = time.monotonic(), None
        images = self.image_topics()
        try:
            for conn, timestamp, raw in self.reader.messages(self.connections):
                if self.stop.is_set():
                    return
                if start_bag is None:
                    start_bag = timestamp
                    start_wall = time.monotonic()
                target = start_wall + (timestamp - start_bag) / 1e9 / self.rate
                self.wait_until(target, (start_wall, start_bag), timestamp)
                self.publish_clock(timestamp)
                self.publishers[conn.topic].publish(bytes(raw))
                self.stats.published[conn.topic] += 1
                if lockstep is not None and conn.topic in images:
                    expected = sum(self.stats.published[t] for t in images) * len(lockstep.lockstep_topics)
                    if not lockstep.wait_for(expected, lockstep_timeout):
                        self.stats.lockstep_timeouts += 1
                    # bag-time pacing continues from here, not from before the wait
                    start_wall, start_bag = time.monotonic(), timestamp
        except READ_ERRORS as exc:
            raise BagError(f"the bag is damaged: {exc}") from exc

    def wait_for_subscribers(self, timeout: float, recorded: list[str]) -> bool:
        """Every image publisher has a subscriber and every recorded topic a publisher, or the timeout passed."""
        publishers = [self.publishers[t] for t in self.image_topics()] or list(self.publishers.values())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in publishers) and all(
                self.node.count_publishers(t) > 0 for t in recorded
            ):
                if recorded:  # the graph shows a publisher a little before its messages reach this node
                    time.sleep(RECORD_SETTLE)
                return True
            time.sleep(0.05)
        return False


def replay(
    path: Path,
    rate: float = 1.0,
    loop: bool = False,
    topic_map: dict[str, str] | None = None,
    topics: list[str] | None = None,
    clock: bool = False,
    wait_for_subscribers: float = 0.0,
    record: Path | None = None,
    record_topics: dict[str, str] | None = None,
    record_grace: float = 2.0,
    lockstep: list[str] | None = None,
    lockstep_timeout: float = 30.0,
) -> ReplayStats:
    """Replay the bag at `path`; rclpy must be initialised by the caller. See the module docstring."""
    record_topics = dict(record_topics or {})
    for topic in lockstep or []:
        record_topics.setdefault(topic, "sensor_msgs/msg/PointCloud2")
    node = rclpy.create_node("alike_bag_replay")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    with ExitStack() as stack:
        stack.callback(node.destroy_node)
        reader = stack.enter_context(open_bag(path))
        player = Player(node, reader, topic_map or {}, topics or [], clock, rate)
        bag = stack.enter_context(write_bag(record)) if record else None
        now_ns = (lambda: player.bag_now) if clock else time.time_ns
        recorder = Recorder(node, bag, record_topics, now_ns, player.stats, lockstep or [])
        if wait_for_subscribers > 0 and not player.wait_for_subscribers(wait_for_subscribers, list(record_topics)):
            node.get_logger().warning(f"no subscriber after {wait_for_subscribers} s; replaying anyway")
        failures: list[BaseException] = []

        def play() -> None:
            try:
                while not player.stop.is_set():
                    player.play_once(recorder if lockstep else None, lockstep_timeout)
                    if not loop:
                        break
            except BaseException as exc:  # handed to the main thread, which owns the bags
                failures.append(exc)

        # The executor runs in this thread because the recorded bag (sqlite) may only be written from the
        # thread that opened it; publishing runs beside it.
        playing = threading.Thread(target=play, daemon=True)
        playing.start()
        try:
            while playing.is_alive():
                executor.spin_once(timeout_sec=0.05)
            deadline = time.monotonic() + (record_grace if record_topics else 0.0)
            while time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
        except KeyboardInterrupt:
            player.stop.set()
            playing.join()
            node.get_logger().info("interrupted")
        executor.shutdown()
        if failures:
            raise failures[0]
    return player.stats


def replay_main(args: argparse.Namespace) -> int:
    print(use_large_data_profile())  # images of VGA and up cross processes best effort only with it
    # Ctrl-C raises KeyboardInterrupt here instead of rclpy invalidating the context under our feet, so an
    # interrupted replay still finishes its recording cleanly
    rclpy.init(args=None, signal_handler_options=SignalHandlerOptions.NO)
    try:
        stats = replay(
            args.inp,
            rate=args.rate,
            loop=args.loop,
            topic_map=parse_pairs(args.topic_map, "old:new"),
            topics=args.topics,
            clock=args.clock,
            wait_for_subscribers=args.wait_for_subscribers,
            record=args.record,
            record_topics=parse_pairs(args.record_topics, "topic:type"),
            record_grace=args.record_grace,
            lockstep=args.lockstep,
            lockstep_timeout=args.lockstep_timeout,
        )
    finally:
        rclpy.try_shutdown()
    print(f"published {sum(stats.published.values())} messages on {len(stats.published)} topics")
    for topic, reason in stats.skipped_topics.items():
        print(f"not replayed: {topic}: {reason}")
    if args.record:
        print(f"recorded {dict(stats.recorded)} into {args.record}")
    if stats.lockstep_timeouts:
        print(f"warning: {stats.lockstep_timeouts} images got no answer on {args.lockstep} in time")
    return 0
