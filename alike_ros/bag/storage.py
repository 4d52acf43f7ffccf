"""Reading and writing rosbag2 directories (sqlite3 or mcap) through `rosbags`, with clear errors.

Messages are rclpy objects, the very classes the node publishes; `rosbags` stores the bytes, provides the
message definitions of new connections and re-serialises rclpy's CDR with zeroed padding (see `canonical`).
Output bags are written to a hidden staging directory next to the destination and moved into place only
once complete.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rclpy.serialization import serialize_message
from rosbags.interfaces import Connection, MessageDefinitionFormat
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
# What a damaged bag raises while it is read: rosbags' own error, sqlite's, or the low-level decode errors
READ_ERRORS = (ReaderError, sqlite3.DatabaseError, struct.error, EOFError, OSError, ValueError, KeyError)


class BagError(RuntimeError):
    """A bag cannot be read or written; the message says which and why."""


@contextmanager
def open_bag(path: str | Path) -> Iterator[Reader]:
    """An open rosbags Reader; a missing, truncated or unsupported bag raises BagError naming the bag."""
    path = Path(path)
    try:
        reader = Reader(path)
        reader.open()
    except (FileNotFoundError, *READ_ERRORS) as exc:
        raise BagError(f"cannot open bag {path}: {exc}") from exc
    try:
        yield reader
    finally:
        reader.close()


def storage_of(path: str | Path) -> str:
    """'sqlite3' or 'mcap', from the bag's metadata (or the file suffix of a bare storage file)."""
    path = Path(path)
    if path.is_dir():
        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return info["storage_identifier"]
    return "mcap" if path.suffix == ".mcap" else "sqlite3"


def read_custom_data(path: str | Path) -> dict[str, Any]:
    """The bag's metadata `custom_data`, JSON values decoded (rosbags' Reader does not expose it)."""
    meta = Path(path) / "metadata.yaml"
    if not meta.is_file():
        return {}
    custom = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"].get("custom_data") or {}
    decoded = {}
    for key, value in custom.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            decoded[key] = value
    return decoded


class BagWriter:
    """Adds connections by topic and writes messages (rclpy objects or CDR bytes) to an open rosbags Writer."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self._connections: dict[str, Connection] = {}

    def add_topic(self, topic: str, msgtype: str, definition: tuple[str, str] | None = None) -> Connection:
        """A new connection; its (msgdef, rihs01 hash) come from the typestore (the types this package
        publishes) unless given."""
        if definition is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        else:
            conn = self.writer.add_connection(topic, msgtype, msgdef=definition[0], rihs01=definition[1])
        self._connections[topic] = conn
        return conn

    def copy_connection(self, conn: Connection) -> Connection:
        """The same topic, type, definition and QoS as an input connection. Bags recorded without message
        definitions fall back to the typestore; a type known to neither raises BagError."""
        if conn.msgdef.format != MessageDefinitionFormat.NONE and conn.msgdef.data and conn.digest:
            msgdef, digest = conn.msgdef.data, conn.digest
        else:
            try:
                msgdef = TYPESTORE.generate_msgdef(conn.msgtype, ros_version=2)[0]
                digest = TYPESTORE.hash_rihs01(conn.msgtype)
            except Exception as exc:  # rosbags raises several types for an unknown name
                raise BagError(f"topic {conn.topic}: type {conn.msgtype} has no definition in the bag") from exc
        return self.writer.add_connection(
            conn.topic,
            conn.msgtype,
            msgdef=msgdef,
            rihs01=digest,
            offered_qos_profiles=conn.ext.offered_qos_profiles,
        )

    def write(self, target: str | Connection, timestamp: int, message: Any) -> None:
        """Write to a topic added with `add_topic` or to a connection; `message` is an rclpy message or CDR."""
        conn = self._connections[target] if isinstance(target, str) else target
        self.writer.write(conn, timestamp, message if isinstance(message, bytes | memoryview) else canonical(message))


def canonical(message: Any) -> bytes:
    """CDR bytes of an rclpy message with zeroed alignment padding: rclpy (Fast CDR) leaves whatever was in
    memory there, so the same message would give different bytes and bags would not be reproducible."""
    msgtype = message.__class__.__module__.split(".")[0] + "/msg/" + message.__class__.__name__
    return bytes(TYPESTORE.serialize_cdr(TYPESTORE.deserialize_cdr(serialize_message(message), msgtype), msgtype))


@contextmanager
def write_bag(
    path: str | Path, storage: str = "sqlite3", overwrite: bool = False, custom_data: dict[str, Any] | None = None
) -> Iterator[BagWriter]:
    """A bag writer whose output appears at `path` only when the block finishes without an exception.

    `custom_data` (a dict the block may still fill) is stored as JSON strings in the bag's metadata.
    """
    path = Path(path)
    if storage not in STORAGES:
        raise BagError(f"unknown storage {storage!r}: use {' or '.join(STORAGES)}")
    if path.exists() and not overwrite:
        raise BagError(f"{path} exists; pass --overwrite to replace it")
    # The storage file is named after the bag directory, so the bag is written under its final name inside
    # a hidden staging directory and moved out of it when complete.
    staging = path.with_name(f".{path.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    staging.mkdir(parents=True)
    writer = Writer(staging / path.name, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
    try:
        writer.open()
        yield BagWriter(writer)
        for key, value in (custom_data or {}).items():
            writer.set_custom_data(key, json.dumps(value))
        writer.close()
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        (staging / path.name).rename(path)
    finally:
        if writer.storage is not None:
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
