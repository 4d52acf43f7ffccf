"""The shipped Fast DDS profile and how the package's processes pick it up (alike_ros.ros.fastdds)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("ament_index_python", reason="comes with the ROS 2 Python packages")

from alike_ros.ros import fastdds  # noqa: E402

PROFILE = Path(__file__).resolve().parents[1] / "config" / fastdds.PROFILE_FILE
NS = {"dds": "http://www.eprosima.com"}


def test_profile_gives_a_large_shared_memory_segment_to_every_participant():
    root = ET.parse(PROFILE).getroot()
    transports = root.findall(".//dds:transport_descriptor", NS)
    shm = [t for t in transports if t.findtext("dds:type", namespaces=NS) == "SHM"]
    assert len(shm) == 1
    assert int(shm[0].findtext("dds:segment_size", namespaces=NS)) >= 16 * 2**20  # two 1080p bgr8 frames
    participant = root.find(".//dds:participant", NS)
    assert participant.get("is_default_profile") == "true"  # applies without naming it in code
    used = {t.text for t in participant.iterfind(".//dds:userTransports/dds:transport_id", NS)}
    declared = {t.findtext("dds:transport_id", namespaces=NS) for t in transports}
    assert used == declared and participant.findtext(".//dds:useBuiltinTransports", namespaces=NS) == "false"


def test_the_package_finds_its_profile_and_uses_it_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv(fastdds.PROFILE_ENV, raising=False)
    monkeypatch.delenv(fastdds.OPT_OUT_ENV, raising=False)
    path = fastdds.profile_path()
    assert path is not None and path.read_bytes() == PROFILE.read_bytes()
    assert str(path) in fastdds.use_large_data_profile()
    assert fastdds.os.environ[fastdds.PROFILE_ENV] == str(path)


def test_a_profile_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv(fastdds.PROFILE_ENV, "/etc/my_profile.xml")
    assert "as set before start" in fastdds.use_large_data_profile()
    assert fastdds.os.environ[fastdds.PROFILE_ENV] == "/etc/my_profile.xml"


def test_opting_out_keeps_fast_dds_defaults(monkeypatch):
    monkeypatch.delenv(fastdds.PROFILE_ENV, raising=False)
    monkeypatch.setenv(fastdds.OPT_OUT_ENV, "off")
    assert "defaults" in fastdds.use_large_data_profile()
    assert fastdds.PROFILE_ENV not in fastdds.os.environ
