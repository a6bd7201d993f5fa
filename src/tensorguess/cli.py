"""Command line: parse arguments, delegate to the library, turn errors into one line.

    python -m tensorguess train DIR [flags]
    python -m tensorguess guess DIR IMAGE [IMAGE...] [--json]
    python -m tensorguess sort DIR SRC DEST
    python -m tensorguess evaluate DIR LABELLED_DIR [OUT_DIR]
    python -m tensorguess export DIR [--format tflite,tflite-int8,coreml]
    python -m tensorguess serve DIR [--port 8080] [--host 127.0.0.1]
    python -m tensorguess fetch-module URL
"""
# Each command is a module of tensorguess/commands, with its arguments and its run; this file builds
# the parser from them, runs the one chosen, and turns a TensorGuessError into one line and a status.

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading

from tensorguess import stderr_noise
from tensorguess.commands import COMMANDS
from tensorguess.errors import EXIT_FAILED, EXIT_USAGE, TensorGuessError

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "WRAPPERS", "build_parser", "main"]  # exit statuses: the CLI's too

WRAPPERS = {name: script for name, (_, _, script) in COMMANDS.items() if script}  # command -> its .sh


def fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"tensor-guess: {message}", file=sys.stderr)
    return code


class Parser(argparse.ArgumentParser):
    """argparse, and a hint when a file name that starts with '-' was taken for a flag."""

    argv: list[str] = []  # the arguments being parsed, set by main()

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        dashed = [arg for arg in self.argv if arg.startswith("-") and os.path.lexists(arg)]
        if dashed:
            wrapper = WRAPPERS.get(self.prog.split()[-1], "guess.sh")
            message += (f"; {dashed[0]!r} was read as a flag: put file names that start with '-' "
                        f"after '--' ({wrapper} DIR -- {dashed[0]})")
        super().error(message)


def command_module(name: str):
    """The module of the command called `name` on the command line."""
    return importlib.import_module(f"tensorguess.commands.{COMMANDS[name][0]}")


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: every command with its arguments (each from its own module)."""
    parser = Parser(prog="tensorguess", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (_, summary, _) in COMMANDS.items():
        module = command_module(name)
        description = getattr(module, "DESCRIPTION", None)
        command = commands.add_parser(name, help=summary, description=description)
        module.add_arguments(command)
    return parser


class Terminated(BaseException):
    """SIGTERM (docker stop, systemd, kill): ended like Ctrl-C, with one line and no traceback."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    stderr_noise.quiet()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str] | None) -> int:
    Parser.argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return command_module(args.command).run(args)
    except TensorGuessError as error:
        return fail(str(error), error.exit_status)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except Terminated:
        return fail("terminated", 143)


if __name__ == "__main__":
    sys.exit(main())
