"""The command lines as a user meets them: help texts, output names, error messages and exit codes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from alike_ros.cli import export, extract

ROOT = Path(__file__).resolve().parents[1]


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def captured_parser(main, monkeypatch) -> argparse.ArgumentParser:
    """The parser a command's main() builds, caught at parse_args (so parsers built inside main count too)."""

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured) as info:
        main([])
    monkeypatch.undo()
    return info.value.parser


def undocumented(parser: argparse.ArgumentParser, name: str) -> list[str]:
    """'<command> <option>' for every argument (options and positionals, subcommands included) without help."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for sub, subparser in action.choices.items():
                if not (helps.get(sub) or "").strip():
                    missing.append(f"{name} {sub}")
                missing += undocumented(subparser, f"{name} {sub}")
            continue
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    return missing


def command_mains():
    from alike_ros.bag import cli as bag
    from alike_ros.evaluation import cli as evaluation
    from alike_ros.training import cli as training

    return {
        "extract": extract.main,
        "export": export.main,
        "bag": bag.main,
        "train": training.main,
        "evaluate": evaluation.main,
    }


def test_every_option_of_every_command_has_help(monkeypatch):
    checked = 0
    for name, main in command_mains().items():
        parser = captured_parser(main, monkeypatch)
        assert undocumented(parser, name) == [], f"arguments without help text in {name}"
        checked += len(parser._actions)
    assert checked > 40  # the walk really saw the parsers


def test_the_help_walk_notices_a_missing_help():
    p = argparse.ArgumentParser()
    p.add_argument("--documented", help="yes")
    p.add_argument("--bare")
    sub = p.add_subparsers().add_parser("cmd", help="a command")
    sub.add_argument("thing")
    assert undocumented(p, "x") == ["x --bare", "x cmd thing"]


# ---- extract


@pytest.fixture
def image_files(tmp_path, textured_image) -> Path:
    """a/x.png, b/x.png (other content, same stem), a/x.jpg and a/y.png under tmp_path/images."""
    root = tmp_path / "images"
    for sub in ("a", "b"):
        (root / sub).mkdir(parents=True)
    cv2.imwrite(str(root / "a" / "x.png"), textured_image)
    cv2.imwrite(str(root / "b" / "x.png"), np.ascontiguousarray(textured_image[::-1]))
    cv2.imwrite(str(root / "a" / "x.jpg"), textured_image)
    cv2.imwrite(str(root / "a" / "y.png"), textured_image[:, ::-1])
    return root


def run_extract(args: list[str], weights: Path) -> int:
    return extract.main([*args, "--weights", str(weights), "--device", "cpu", "--max-keypoints", "50"])


def test_extract_refuses_images_whose_outputs_clash(image_files, tmp_path, alike_t_weights, capsys):
    out = tmp_path / "out"
    a, b, jpg = image_files / "a" / "x.png", image_files / "b" / "x.png", image_files / "a" / "x.jpg"
    for clash in ([a, b], [a, jpg]):
        assert run_extract([*map(str, clash), "--out", str(out)], alike_t_weights) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"error: {clash[0]} and {clash[1]} would both write {out / 'x.npz'}: " + (
            "extract images with the same stem into different --out folders"
        )
        assert not out.exists()  # refused before extracting anything


def test_extract_writes_one_file_per_image_and_a_repeated_file_once(image_files, tmp_path, alike_t_weights):
    out = tmp_path / "out"
    a, y = image_files / "a" / "x.png", image_files / "a" / "y.png"
    again = image_files / "b" / ".." / "a" / "x.png"  # the same file by another name
    assert run_extract([str(a), str(y), str(again), "--out", str(out)], alike_t_weights) == 0
    assert sorted(p.name for p in out.iterdir()) == ["x.npz", "y.npz"]
    x, flipped = np.load(out / "x.npz"), np.load(out / "y.npz")
    assert 0 < len(x["keypoints"]) <= 50 and x["descriptors"].shape == (len(x["keypoints"]), 64)
    assert not np.array_equal(x["keypoints"], flipped["keypoints"])  # y.npz really is y.png's


def test_extract_out_that_is_a_file_is_a_one_line_error(image_files, tmp_path, alike_t_weights, capsys):
    out = tmp_path / "taken"
    out.write_text("keep me")
    assert run_extract([str(image_files / "a" / "x.png"), "--out", str(out)], alike_t_weights) == 2
    assert capsys.readouterr().err == f"error: --out {out} exists and is not a folder\n"
    assert out.read_text() == "keep me"


def test_extract_max_side_lets_large_images_through(image_files, tmp_path, alike_t_weights, capsys, monkeypatch):
    import alike_ros.extractor

    monkeypatch.setattr(alike_ros.extractor, "MAX_PIXELS", 50_000)  # 320 x 240 = 76800 pixels is "too large"
    image = image_files / "a" / "x.png"
    assert run_extract([str(image), "--out", str(tmp_path / "native")], alike_t_weights) == 1
    err = capsys.readouterr().err
    assert "exceeds 50000 pixels; set max_side (--max-side)" in err
    assert run_extract([str(image), "--out", str(tmp_path / "small"), "--max-side", "200"], alike_t_weights) == 0
    keypoints = np.load(tmp_path / "small" / "x.npz")["keypoints"]
    assert len(keypoints) > 0 and keypoints[:, 0].max() < 320 and keypoints[:, 1].max() < 240  # original pixels


def test_extract_damaged_weights_are_a_one_line_error(image_files, tmp_path, capsys):
    weights = tmp_path / "damaged.pth"
    weights.write_bytes(b"PK\x03\x04 not really a zip")
    assert run_extract([str(image_files / "a" / "x.png"), "--out", str(tmp_path / "out")], weights) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(weights) in err and "not a PyTorch weights file, or damaged" in err
    assert "weights_only" not in err


# ---- python -m alike_ros from the parent folder of a clone named alike_ros


def test_running_from_the_parent_folder_of_the_clone_says_so(tmp_path):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "alike_ros").symlink_to(ROOT, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}

    def python(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=parent, env=env, capture_output=True, text=True, timeout=120)

    probe = python("-c", "import alike_ros, alike_ros.__main__; print(alike_ros.__file__)")
    if probe.returncode != 0 or probe.stdout.strip() != "None":
        pytest.skip(f"this install does not reproduce the shadowing: {probe.stdout.strip()} {probe.stderr[-200:]}")
    folder = parent / "alike_ros"
    expected = (
        f"error: 'alike_ros' was imported from {folder}, a folder without __init__.py (the repository, run from "
        f"its parent folder): run from inside the repository or install the package: pip install -e {folder}\n"
    )
    for command in (["extract", "x.png", "--out", "out"], ["--help"]):
        result = python("-m", "alike_ros", *command)
        assert (result.returncode, result.stderr, result.stdout) == (2, expected, "")
    # the library says the same where it looks for the bundled weights, instead of "no bundled weights"
    api = python("-c", "from alike_ros.model.weights import load_model; load_model('alike-t')")
    assert api.returncode == 1 and api.stderr.splitlines()[-1] == "alike_ros.model.weights.WeightsError: " + (
        expected.removeprefix("error: ").strip()
    )


def test_extract_in_batches_gives_what_one_by_one_gives(
    image_files, tmp_path, alike_t_weights, monkeypatch, capsys, batch_sizes
):
    """On CUDA consecutive images of one size share a network pass (forced here on the CPU): the same files, and an
    unreadable image or one of another size in between still handled on its own."""
    a = image_files / "a"
    cv2.imwrite(str(a / "small.png"), cv2.imread(str(a / "x.png"))[:200, :240])
    (a / "broken.png").write_bytes(b"not a png")
    (a / "z.png").write_bytes((image_files / "b" / "x.png").read_bytes())
    images = [str(a / name) for name in ("x.png", "y.png", "broken.png", "small.png", "z.png")]
    assert run_extract([*images, "--out", str(tmp_path / "single")], alike_t_weights) == 1
    monkeypatch.setattr(extract, "batch_pays", lambda extractor: True)
    assert run_extract([*images, "--out", str(tmp_path / "batched")], alike_t_weights) == 1
    assert "broken.png" in capsys.readouterr().err
    assert [n for n in batch_sizes if n > 1] == [2]  # x.png with y.png; broken.png, small.png, z.png each alone
    for name in ("x.npz", "y.npz", "small.npz", "z.npz"):
        single, batched = np.load(tmp_path / "single" / name), np.load(tmp_path / "batched" / name)
        for key in ("keypoints", "scores", "descriptors"):
            np.testing.assert_allclose(batched[key], single[key], atol=1e-5)
