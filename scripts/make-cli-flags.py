"""Write scripts/lib/cli-flags.sh, what the wrappers know of the CLI's flags, from its parser.

    python scripts/make-cli-flags.py            # rewrite scripts/lib/cli-flags.sh
    python scripts/make-cli-flags.py --check    # exit 1 if it differs from the parser

The wrappers read their arguments before the CLI does, to declare what the Docker runtime mounts
(scripts/lib/mounts.sh). They must know which flags take a value, or a flag's value is taken for a
photo path; the parser says that, so it is generated, with the default feature extractor.

Which flags name paths, and whether the command reads or writes them, the parser does not say:
PATH_FLAGS below is that one mapping, written by hand. A flag of a command in PATH_FLAGS whose
name ends like a path's (_dir, _csv, _graph...) and that the mapping does not place stops this
script, so a new path flag cannot pass unmounted. tests/python/test_cli_flags.py regenerates the
file in memory and compares.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "scripts" / "lib" / "cli-flags.sh"

# What each kind of path flag makes the wrappers mount (scripts/lib/mounts.sh reads these words).
KINDS = {
    "value": "a value that names no path",
    "optional": "a value only when the next word is not a flag (a bare flag has its default)",
    "read": "a file or folder the command reads (read-only)",
    "read-folder-of": "a file the command reads with its folder (a labels CSV: its photos are "
                      "relative to it)",
    "write": "a folder the command writes into",
    "write-here": "a folder the command writes into, a relative one from the working directory "
                  "(not DIR)",
    "write-report": "a folder the command writes its report into",
    "write-folder-of": "a file, or a folder swapped in whole, the command writes: its folder is "
                       "writable",
    "module": "the feature extractor: a URL, a TF Hub handle or a local folder",
}
# The commands whose wrappers read path flags, and what those flags are. export.sh mounts DIR
# whole and reads no flag; fetch-module has no wrapper.
PATH_FLAGS = {
    "train": {"image_dir": "read", "labels_csv": "read-folder-of", "tfhub_module": "module",
              "bottleneck_dir": "write", "summaries_dir": "write", "report_dir": "write-report",
              "output_graph": "write-folder-of", "output_labels": "write-folder-of",
              "train_log": "write-folder-of", "saved_model_dir": "write-folder-of", "keypoints": "read"},
    "guess": {"output_graph": "read", "output_labels": "read", "draw": "write-here"},
    "sort": {"output_graph": "read", "output_labels": "read"},
    "evaluate": {"output_graph": "read", "output_labels": "read"},
    "serve": {"output_graph": "read", "output_labels": "read"},
}
PATH_LIKE = ("_dir", "_csv", "_graph", "_labels", "_log", "_module", "_path", "_file")


def cli_parser() -> argparse.ArgumentParser:
    """The CLI's whole parser, every command in it."""
    from tensorguess.cli import build_parser

    return build_parser()


def default_module() -> str:
    """The feature extractor train uses without --tfhub_module or TFHUB_MODULE."""
    from tensorguess.features.modules import DEFAULT_MODULE

    return DEFAULT_MODULE


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand by its name (an alias, which shares its parser, is left out)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                if all(command is not seen for seen in found.values()):
                    found[name] = command
    return found


def flag_kinds(parser: argparse.ArgumentParser) -> dict[tuple[str, str], str]:
    """(command, --flag) -> its kind, for every flag that takes a value, in the parser's order."""
    kinds: dict[tuple[str, str], str] = {}
    for name, command in subcommands(parser).items():
        paths = PATH_FLAGS.get(name, {})
        dests = set()
        for action in command._actions:
            if action.nargs == 0 or not action.option_strings:
                continue  # a switch, or a positional argument
            dests.add(action.dest)
            kind = paths.get(action.dest)
            if kind is None:
                if name in PATH_FLAGS and action.dest.endswith(PATH_LIKE):
                    raise SystemExit(f"{Path(__file__).name}: {name} --{action.dest} looks like a path: "
                                     "say in PATH_FLAGS what the command does with it")
                kind = "optional" if action.nargs == "?" else "value"
            for flag in action.option_strings:
                if flag.startswith("--"):
                    kinds[(name, flag)] = kind
        unknown = sorted(set(paths) - dests)
        if unknown:
            raise SystemExit(f"{Path(__file__).name}: PATH_FLAGS names {name} "
                             f"{', '.join('--' + dest for dest in unknown)}, which the parser does not have")
    return kinds


def generate(parser: argparse.ArgumentParser | None = None, module: str | None = None) -> str:
    """The text of scripts/lib/cli-flags.sh, from PARSER and MODULE (the CLI's by default)."""
    kinds = flag_kinds(parser or cli_parser())
    lines = [
        "# shellcheck shell=bash disable=SC2034  # read by scripts/lib/mounts.sh, which sources it",
        "# Generated by scripts/make-cli-flags.py from the CLI's parser: do not edit, rerun it",
        "# (tests/python/test_cli_flags.py fails until the file matches the parser).",
        "",
        "# The feature extractor train uses without --tfhub_module or TFHUB_MODULE.",
        f"TG_DEFAULT_MODULE={shlex.quote(module or default_module())}",
        "",
        "# TG_CLI_FLAGS[\"COMMAND --FLAG\"]: how the wrappers read each flag that takes a value (a flag",
        "# not listed takes none), spelled in full as `--FLAG VALUE` or `--FLAG=VALUE`:",
        *(f"#   {kind:<16}{text}" for kind, text in KINDS.items()),
        "declare -gA TG_CLI_FLAGS=(",
        *(f"  [{shlex.quote(f'{name} {flag}')}]={kind}" for (name, flag), kind in kinds.items()),
        ")",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO / "src"))
    wanted = generate()
    text = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
    if "--check" in argv:
        if wanted != text:
            print(f"{OUT} differs from the parser: run python scripts/make-cli-flags.py", file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        OUT.write_text(wanted, encoding="utf-8")
        print(f"Wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
