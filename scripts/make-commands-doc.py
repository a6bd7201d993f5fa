"""Rewrite the generated parts of docs/commands.md from the command-line parser.

    python scripts/make-commands-doc.py            # rewrite docs/commands.md in place
    python scripts/make-commands-doc.py --check    # exit 1 if it differs from the parser

docs/commands.md is written by hand, except between a pair of markers per command:

    <!-- generated: train -->
    ...usage and every flag, from tensorguess.cli.build_parser()...
    <!-- end generated: train -->

Only what lies between the markers is replaced, so the prose around them stays as written and the
flags cannot drift from the parser. Every command of the parser needs its pair of markers, and
every pair must name a command of the parser: either mistake stops the script with one line.
tests/python/test_commands_doc.py regenerates the file in memory and compares.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "commands.md"
MARKED = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n).*?(<!-- end generated: (?P=name) -->)",
                    re.DOTALL)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand by its name (an alias, which shares its parser, is left out)."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                if all(command is not seen for seen in found.values()):
                    found[name] = command
    return found


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help:
        return ""
    # argparse's own expansion: %% and %(default)s, as --help prints them, without its line wrapping
    return parser._get_formatter()._expand_help(action)


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(choice) for choice in action.choices) + "}"
    return action.dest.upper()


def _positional(action: argparse.Action) -> str:
    name = _metavar(action)
    return {"?": f"[{name}]", "+": f"{name} [{name}...]", "*": f"[{name}...]"}.get(action.nargs, name)


def render(name: str, command: argparse.ArgumentParser, wrapper: str | None) -> str:
    """One command's usage line, its arguments and its flags, as Markdown."""
    actions = [action for action in command._actions
               if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)]
    positionals = [action for action in actions if not action.option_strings]
    flags = [action for action in actions if action.option_strings]
    words = [_positional(action) for action in positionals] + (["[flags]"] if flags else [])
    runs = f"bash {wrapper}" if wrapper else f"python -m tensorguess {name}"
    lines = [f"Usage: `{' '.join([runs, *words])}`", ""]
    if positionals:
        lines += ["| argument | |", "|---|---|"]
        lines += [f"| `{_positional(action)}` | {_cell(_help(command, action))} |" for action in positionals]
        lines.append("")
    if flags:
        lines += ["| flag | |", "|---|---|"]
        for action in flags:
            takes = action.nargs != 0
            spelled = ", ".join(f"`{flag} {_metavar(action)}`" if takes else f"`{flag}`"
                                for flag in action.option_strings)
            if action.nargs == "?":
                spelled += f" (or bare: `{action.option_strings[0]}` = `{action.const}`)"
            text = _help(command, action)
            if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
                text += f" (default: {action.default})"
            lines.append(f"| {spelled} | {_cell(text)} |")
        lines.append("")
    return "\n".join(lines)


def generate(text: str, parser: argparse.ArgumentParser | None = None,
             wrappers: dict[str, str] | None = None) -> str:
    """TEXT with every generated part rewritten from PARSER (tensorguess.cli's by default)."""
    if parser is None or wrappers is None:
        from tensorguess import cli
        parser = parser or cli.build_parser()
        wrappers = wrappers if wrappers is not None else getattr(cli, "WRAPPERS", {})
    commands = subcommands(parser)
    marked = [match["name"] for match in MARKED.finditer(text)]
    unknown = [name for name in marked if name not in commands]
    if unknown:
        raise SystemExit(f"{DOC.name}: markers for {', '.join(unknown)}, which the parser does not have")
    missing = [name for name in commands if name not in marked]
    if missing:
        raise SystemExit(f"{DOC.name}: no '<!-- generated: NAME -->' ... '<!-- end generated: NAME -->' "
                         f"markers for {', '.join(missing)}; add them where the command is described")
    return MARKED.sub(lambda match: match[1] + render(match["name"], commands[match["name"]],
                                                      wrappers.get(match["name"])) + match[3], text)


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO / "src"))
    text = DOC.read_text(encoding="utf-8")
    wanted = generate(text)
    if "--check" in argv:
        if wanted != text:
            print(f"{DOC} differs from the parser: run python scripts/make-commands-doc.py", file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        DOC.write_text(wanted, encoding="utf-8")
        print(f"Wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
