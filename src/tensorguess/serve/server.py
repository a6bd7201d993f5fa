"""Run serve's ASGI app under uvicorn on one address until SIGTERM or Ctrl-C.

The socket is bound here, before uvicorn starts, so that a port taken or refused is
one line, and port 0 (any free port, for tests) is known and said: the line
`Serving DIR at http://HOST:PORT/` comes once the server accepts requests.
uvicorn stops on SIGINT and SIGTERM gracefully (requests in flight are answered),
then raises the signal again, which the CLI turns into its usual last line.

uvicorn has no timeout for a request's head (its keep-alive timeout runs only between
requests, and any byte received cancels it), so a client that connects and never ends
its headers held its connection for ever: HeaderDeadline closes it once --header_timeout
has passed since it connected or since its last answer. The body has its own timeout
(--timeout) in the app.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tensorguess.errors import TensorGuessError
from tensorguess.serve.access import is_loopback


class ServeError(TensorGuessError):
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


__all__ = ["HeaderDeadline", "ServeError", "bind", "is_loopback", "run", "url"]


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


class HeaderDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is not complete within
    `header_timeout_s` of the connection or of the previous answer (a subclass per value:
    uvicorn makes the protocol from its class).

    httptools (llhttp, in C) and not h11 (pure Python): a camera frame is a 200-300 KB body, and
    h11 parsing it in Python cost 1.5 to 3 ms of a camera frame's 16 to 29 (docs/benchmarks.md, the
    camera's section)."""

    header_timeout_s: float = 10.0
    _deadline: asyncio.TimerHandle | None = None

    @classmethod
    def within(cls, seconds: float) -> type[HeaderDeadline]:
        return type(cls.__name__, (cls,), {"header_timeout_s": seconds})

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()  # a request's head has arrived whole
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # httptools parses a pipelined request's head as it arrives, while the one before is being
        # answered, and queues it: its head is whole already, so only a connection with nothing
        # queued waits for a head again.
        queued = bool(self.pipeline)
        super().on_response_complete()
        if queued:
            self._disarm()
        else:
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def run(app, host: str, port: int, what: str, say: Callable[[str], None], warn: Callable[[str], None],
        shown_host: str | None = None, timeout_s: float = 30.0, header_timeout_s: float = 10.0,
        needs_token: bool = False, then: list[str] | tuple[str, ...] = ()) -> None:
    """Serve `app` on host:port until a signal; `shown_host` is the address users reach it
    at when it differs (the host side of Docker's published port); `needs_token`: the app
    asks for TG_SERVE_TOKEN, which the line after `Serving` tells how to give; `then`: more lines said
    after those (which model scores the camera's frames)."""
    sock = bind(host, port)
    port = sock.getsockname()[1]
    shown = shown_host or host
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_keep_alive=5, timeout_graceful_shutdown=timeout_s,
                            server_header=False, http=HeaderDeadline.within(header_timeout_s))
    server = _Server(config)

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if server.started:
            if not is_loopback(shown):
                who, note = ("anyone with the token", "; the token travels as plain HTTP") if needs_token \
                    else ("anyone", "")
                warn(f"tensor-guess: listening on {shown}, not on the loopback address: {who} who can reach "
                     f"this machine on port {port} can send photos to score (--host 127.0.0.1 keeps it "
                     f"local{note})")
            say(f"Serving {what} at {url(shown, port)} (Ctrl-C stops)")
            if needs_token:
                say("Requests need the token in TG_SERVE_TOKEN: 'Authorization: Bearer TOKEN'; "
                    f"for the page, open {url(shown, port)}?token=TOKEN once")
            for line in then:
                say(line)
        await serving

    try:
        asyncio.run(main())
    finally:
        sock.close()
