"""Ending the CLI when the wrapper that started it is gone (the Docker runtime).

A `docker run` client killed with SIGKILL cannot pass the kill on, and its
container would go on working (filling the bottleneck cache) with nobody to read
its output. The wrappers therefore run `docker run --interactive` with a stdin
that never sends anything and stays open as long as the client lives, and set
TG_EXIT_WITH_CLIENT=1. `--interactive` makes the attach "stdin once": when the
client's connection ends, however it ends, the daemon closes the container's
stdin. A daemon thread here reads stdin to its end, then ends the process at
once: the CLI writes every file atomically (files.write_atomically), so an abrupt
end leaves no half-written file, only, at worst, one hidden temporary file.

A terminal as stdin is not watched: reading it would eat what the user types,
Ctrl-D would end the work, and the daemon never closes a terminal (the wrappers
watch the client from the host in that case; see run_in_docker in scripts/lib.sh).
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping

ENV = "TG_EXIT_WITH_CLIENT"
MESSAGE = "tensor-guess: the wrapper is gone; stopping"
# 128 + SIGHUP, as a shell reports a command whose terminal hung up: the other
# end went away. Nobody reads it but the engine (the client is gone).
EXIT_STATUS = 129


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 65536):
            pass  # nothing is ever sent; anything that is, is not ours to act on
    except OSError:
        pass  # a read error is the end of stdin too
    try:
        # os.write, not print: no lock of sys.stderr's to wait for while the main
        # thread may hold it.
        os.write(2, (MESSAGE + "\n").encode())
    except OSError:
        pass
    os._exit(EXIT_STATUS)


def start(environ: Mapping[str, str] = os.environ, fd: int = 0) -> bool:
    """Watch `fd` (stdin) when TG_EXIT_WITH_CLIENT=1; whether a watch started."""
    if environ.get(ENV) != "1":
        return False
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False  # no stdin at all: nothing to watch
    if stat.S_ISCHR(mode) and os.isatty(fd):
        return False
    threading.Thread(target=_watch, args=(fd,), name="tensor-guess-watchdog", daemon=True).start()
    return True
