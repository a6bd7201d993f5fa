"""docs/commands.md holds every flag of every command as the parser defines it."""

from __future__ import annotations

import argparse
import importlib.util

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "make-commands-doc.py"


def make_doc():
    spec = importlib.util.spec_from_file_location("make_commands_doc", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_commands_doc_is_generated_from_the_parser():
    doc = REPO / "docs" / "commands.md"
    text = doc.read_text(encoding="utf-8")
    wanted = make_doc().generate(text)
    assert wanted == text, f"{doc} differs from the parser: run python {SCRIPT.relative_to(REPO)}"


def test_every_flag_of_every_command_is_in_it():
    from tensorguess.cli import build_parser

    make = make_doc()
    text = (REPO / "docs" / "commands.md").read_text(encoding="utf-8")
    for name, command in make.subcommands(build_parser()).items():
        for action in command._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text, f"{name} {flag}"


def toy_parser(*names: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    commands = parser.add_subparsers(dest="command")
    for name in names:
        command = commands.add_parser(name)
        command.add_argument("dir", help="the folder")
        command.add_argument("images", nargs="+", help="images")
        command.add_argument("--rate", type=float, default=0.5, help="how fast, in %%")
        command.add_argument("--mode", choices=("a", "b"), default="a", help="which (default: a)")
        command.add_argument("--hidden", help=argparse.SUPPRESS)
    return parser


def test_the_generator_fills_only_between_markers():
    make = make_doc()
    text = "# Toy\n\nprose stays\n\n<!-- generated: run -->\nstale\n<!-- end generated: run -->\n\nafter\n"
    out = make.generate(text, toy_parser("run"), {"run": "run.sh"})
    assert out.startswith("# Toy\n\nprose stays\n\n<!-- generated: run -->\nUsage: `bash run.sh DIR IMAGES")
    assert "stale" not in out and out.endswith("<!-- end generated: run -->\n\nafter\n")
    assert "| `--rate RATE` | how fast, in % (default: 0.5) |" in out
    assert "| `--mode {a,b}` | which (default: a) |" in out
    assert "--hidden" not in out
    assert make.generate(out, toy_parser("run"), {"run": "run.sh"}) == out


def test_a_command_without_markers_or_markers_without_a_command_stop_it():
    make = make_doc()
    text = "<!-- generated: run -->\n<!-- end generated: run -->\n"
    with pytest.raises(SystemExit, match="no '<!-- generated: NAME -->'.*for new"):
        make.generate(text, toy_parser("run", "new"), {})
    with pytest.raises(SystemExit, match="markers for run, which the parser does not have"):
        make.generate(text, toy_parser("other"), {})
