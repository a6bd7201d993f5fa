"""scripts/lib/cli-flags.sh, the wrappers' knowledge of the CLI's flags, matches the parser."""

from __future__ import annotations

import argparse
import importlib.util
import subprocess

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "make-cli-flags.py"
FLAGS = REPO / "scripts" / "lib" / "cli-flags.sh"


def make_flags():
    spec = importlib.util.spec_from_file_location("make_cli_flags", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_flags_is_generated_from_the_parser():
    wanted = make_flags().generate()
    assert wanted == FLAGS.read_text(encoding="utf-8"), (
        f"{FLAGS.relative_to(REPO)} differs from the parser: run python {SCRIPT.relative_to(REPO)}")


def toy_parser(**flags: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    command = parser.add_subparsers(dest="command").add_parser("guess")
    command.add_argument("dir")
    command.add_argument("--json", action="store_true")
    for name, options in flags.items():
        command.add_argument(f"--{name}", **options)
    return parser


def test_every_flag_taking_a_value_is_listed_with_its_kind():
    make = make_flags()
    text = make.generate(toy_parser(output_graph={}, output_labels={}, draw={},
                                    level={"nargs": "?", "const": "on"}, rate={"type": float}),
                         "https://example.org/module")
    assert "TG_DEFAULT_MODULE=https://example.org/module\n" in text
    assert "  ['guess --output_graph']=read\n" in text
    assert "  ['guess --level']=optional\n" in text
    assert "  ['guess --rate']=value\n" in text
    assert "  ['guess --draw']=write-here\n" in text
    assert "--json" not in text.split("declare -gA", 1)[1]


def test_a_path_flag_the_mapping_does_not_place_stops_it():
    make = make_flags()
    with pytest.raises(SystemExit, match="guess --photo_dir looks like a path: say in PATH_FLAGS"):
        make.generate(toy_parser(output_graph={}, output_labels={}, draw={}, photo_dir={}), "m")
    with pytest.raises(SystemExit, match="names guess --output_labels, which the parser does not have"):
        make.generate(toy_parser(output_graph={}, draw={}), "m")


def test_no_flag_value_is_taken_for_a_photo(tmp_path):
    """Each flag of guess, sort and evaluate given an existing file as its value: only the path
    flags mount it, and the photo after it is mounted by its folder."""
    from tensorguess.cli import build_parser

    make = make_flags()
    kinds = make.flag_kinds(build_parser())
    (tmp_path / "dir").mkdir()
    (tmp_path / "value").mkdir()
    (tmp_path / "value" / "word").write_text("")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_text("")
    for (command, flag), kind in kinds.items():
        if command not in ("guess", "sort", "evaluate"):
            continue
        script = (f'source "{REPO}/scripts/lib.sh"; mount_guess dir {flag} "$1" photos/a.jpg; '
                  'printf "%s\\n" "${TG_MOUNTS[@]}"')
        mounts = subprocess.run(["bash", "-c", script, "_", tmp_path / "value" / "word"], cwd=tmp_path,
                                check=True, capture_output=True, text=True).stdout.split()
        expected = [f"ro:{tmp_path}/dir", f"ro:{tmp_path}/photos"]
        if kind == "read":
            expected.insert(1, f"ro:{tmp_path}/value/word")
        if kind == "write-here":  # guess --draw: writable, and not inside DIR
            expected.insert(1, f"rw:{tmp_path}/value/word")
        assert mounts == expected, (command, flag, kind)


def test_a_relative_draw_folder_is_mounted_from_the_working_directory(tmp_path):
    """guess --draw names a folder from where guess.sh runs, as the CLI opens it, not inside DIR."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_text("")
    for spelling in (["--draw", "drawn"], ["--draw=drawn"]):
        script = (f'source "{REPO}/scripts/lib.sh"; mount_guess dir "$@" photos/a.jpg; '
                  'printf "%s\\n" "${TG_MOUNTS[@]}"')
        mounts = subprocess.run(["bash", "-c", script, "_", *spelling], cwd=tmp_path, check=True,
                                capture_output=True, text=True).stdout.split()
        assert mounts == [f"ro:{tmp_path}/dir", f"rw:{tmp_path}/drawn", f"ro:{tmp_path}/photos"], spelling
