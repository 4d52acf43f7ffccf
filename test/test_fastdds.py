"""The shipped Fast DDS profile and how the package's processes pick it up (alike_ros.ros.fastdds)."""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

pytest.importorskip("ament_index_python", reason="comes with the ROS 2 Python packages")

from alike_ros.ros import fastdds  # noqa: E402

PROFILE = Path(__file__).resolve().parents[1] / "config" / fastdds.PROFILE_FILE
NS = {"dds": "http://www.eprosima.com"}
# The schema each Fast DDS installs, with its target namespace (Fast DDS's parser itself ignores the namespace).
SCHEMAS = {
    2: ("fastRTPS_profiles.xsd", "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"),
    3: ("fastdds/fastdds_profiles.xsd", "http://www.eprosima.com"),
}


@pytest.fixture
def no_profile(monkeypatch):
    for name in (*fastdds.PROFILE_ENVS, fastdds.OPT_OUT_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_prefixes(tmp_path, monkeypatch):
    """Make ROS prefixes holding a Fast DDS library of the given major versions, first prefix first."""

    calls = iter(range(100))

    def make(*majors: int) -> None:
        call, prefixes = next(calls), []
        for i, major in enumerate(majors):
            lib = tmp_path / f"call{call}" / f"prefix{i}" / "lib"
            lib.mkdir(parents=True)
            (lib / ("libfastrtps.so.2.14.5" if major == 2 else "libfastdds.so.3.2.2")).touch()
            prefixes.append(str(lib.parent))
        monkeypatch.setenv("AMENT_PREFIX_PATH", ":".join(prefixes))
        fastdds.fastdds_major.cache_clear()

    yield make
    fastdds.fastdds_major.cache_clear()


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


def test_profile_is_valid_for_the_installed_fast_dds():
    """Checked against the XML schema of the Fast DDS installed here (2.14 on Jazzy, 3.2 on Kilted)."""
    xmlschema = pytest.importorskip("xmlschema", reason="a dev requirement")
    major = fastdds.fastdds_major()
    if major is None:
        pytest.skip("no Fast DDS library found in the ROS prefixes or this venv")
    name, namespace = SCHEMAS[major]
    xsd = Path(sys.prefix) / "share" / name
    if not xsd.is_file():
        pytest.skip(f"Fast DDS {major}.x's schema is not installed at {xsd}")
    text = re.sub(r'xmlns="[^"]*"', f'xmlns="{namespace}"', PROFILE.read_text(), count=1)
    errors = [f"{e.reason} at {e.path}" for e in xmlschema.XMLSchema(xsd).iter_errors(text)]
    assert errors == []


def test_the_installed_fast_dds_is_recognised():
    """The library search agrees with the rmw wheels installed: Jazzy's (ros-jazzy-*) bring Fast DDS 2, Kilted's 3."""
    try:
        rmw = version("ros-rmw-fastrtps-cpp")
    except PackageNotFoundError:
        pytest.skip("rmw_fastrtps_cpp is not a pip wheel here (a ROS install)")
    assert fastdds.fastdds_major() == (3 if int(rmw.split(".")[0]) >= 9 else 2)


def test_jazzy_reads_the_old_name_and_kilted_the_new_one(fake_prefixes):
    fake_prefixes(2)
    assert fastdds.variables_read() == ("FASTRTPS_DEFAULT_PROFILES_FILE",)
    assert fastdds.profile_environment("/p.xml") == {"FASTRTPS_DEFAULT_PROFILES_FILE": "/p.xml"}
    fake_prefixes(3, 2)  # an overlay's Fast DDS before the underlay's
    assert fastdds.variables_read()[0] == "FASTDDS_DEFAULT_PROFILES_FILE"
    assert fastdds.profile_environment("/p.xml") == {"FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml"}
    assert fastdds.camera_setting("/p.xml") == "FASTDDS_DEFAULT_PROFILES_FILE=/p.xml"


def test_an_unknown_fast_dds_gets_both_names(fake_prefixes, monkeypatch):
    fake_prefixes()
    monkeypatch.setattr(fastdds.sys, "prefix", "/nonexistent")
    assert fastdds.fastdds_major() is None
    assert set(fastdds.profile_environment("/p.xml")) == set(fastdds.PROFILE_ENVS)


def test_the_package_finds_its_profile_and_uses_it_unless_told_otherwise(no_profile):
    path = fastdds.profile_path()
    assert path is not None and path.read_bytes() == PROFILE.read_bytes()
    assert str(path) in fastdds.use_large_data_profile()
    for name in fastdds.profile_environment(path):
        assert fastdds.os.environ[name] == str(path)
    assert fastdds.profile_in_effect() == f"{fastdds.variables_read()[0]}={path}"


@pytest.mark.parametrize("name", fastdds.PROFILE_ENVS)
def test_a_profile_the_user_set_is_kept(no_profile, monkeypatch, name):
    monkeypatch.setenv(name, "/etc/my_profile.xml")
    message = fastdds.use_large_data_profile()
    assert fastdds.os.environ[name] == "/etc/my_profile.xml"
    assert [n for n in fastdds.PROFILE_ENVS if fastdds.os.environ.get(n)] == [name]  # nothing added beside it
    if name in fastdds.variables_read():
        assert "as set before start" in message and "/etc/my_profile.xml" in fastdds.profile_in_effect()
    else:  # Jazzy's Fast DDS 2.x never reads FASTDDS_DEFAULT_PROFILES_FILE: say so, and name the one it reads
        assert f"reads {fastdds.variables_read()[0]}" in message and "defaults" in fastdds.profile_in_effect()


def test_a_3x_name_on_fast_dds_2_is_pointed_out(no_profile, fake_prefixes, monkeypatch):
    fake_prefixes(2)
    monkeypatch.setenv("FASTDDS_DEFAULT_PROFILES_FILE", "/etc/my_profile.xml")
    message = fastdds.use_large_data_profile()
    assert message.startswith("Fast DDS defaults") and "reads FASTRTPS_DEFAULT_PROFILES_FILE" in message
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in fastdds.os.environ


def test_opting_out_keeps_fast_dds_defaults(no_profile, monkeypatch):
    monkeypatch.setenv(fastdds.OPT_OUT_ENV, "off")
    assert "defaults" in fastdds.use_large_data_profile()
    assert not any(name in fastdds.os.environ for name in fastdds.PROFILE_ENVS)
