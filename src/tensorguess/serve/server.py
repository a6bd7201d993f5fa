"""Run serve's ASGI app under uvicorn on one address until SIGTERM or Ctrl-C.

The socket is bound here, before uvicorn starts, so that a port taken or refused is
one line, and port 0 (any free port, for tests) is known and said: the line
`Serving DIR at http://HOST:PORT/` comes once the server accepts requests.
uvicorn stops on SIGINT and SIGTERM gracefully (requests in flight are answered),
then raises the signal again, which the CLI turns into its usual last line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
from collections.abc import Callable

import uvicorn


class ServeError(Exception):
    """The server cannot start; the message says what to do."""


def bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it a keep-alive client waited 40 ms a request (Nagle's algorithm holding the
        # body of each answer until the client's delayed ACK of its headers).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        raise ServeError(f"cannot listen on {host} port {port} ({error.strerror or error}); "
                         "choose another --port or --host") from error
    sock.set_inheritable(True)
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server, leaving alone a signal the process was started ignoring.

    uvicorn handles SIGINT even where it was ignored (a shell's background job, nohup):
    such a server stopped on a Ctrl-C meant for the foreground, and then, the signal
    raised again into its ignoring handler, ended with status 0 and no word.
    """

    def __init__(self, config):
        super().__init__(config)
        self.ignored = {sig for sig in (signal.SIGINT, signal.SIGTERM)
                        if signal.getsignal(sig) is signal.SIG_IGN}

    def handle_exit(self, sig, frame) -> None:
        if sig not in self.ignored:
            super().handle_exit(sig, frame)


def run(app, host: str, port: int, what: str, say: Callable[[str], None], warn: Callable[[str], None],
        shown_host: str | None = None, timeout_s: float = 30.0) -> None:
    """Serve `app` on host:port until a signal; `shown_host` is the address users reach it
    at when it differs (the host side of Docker's published port)."""
    sock = bind(host, port)
    port = sock.getsockname()[1]
    shown = shown_host or host
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_keep_alive=5, timeout_graceful_shutdown=timeout_s,
                            server_header=False)
    server = _Server(config)

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if server.started:
            if not is_loopback(shown):
                warn(f"tensor-guess: listening on {shown}, not on the loopback address: anyone who can reach "
                    f"this machine on port {port} can send photos to score (--host 127.0.0.1 keeps it local)")
            say(f"Serving {what} at {url(shown, port)} (Ctrl-C stops)")
        await serving

    try:
        asyncio.run(main())
    finally:
        sock.close()
