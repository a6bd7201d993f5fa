"""serve against hostile clients: a real server process, raw sockets, the trained superheroes model.

The Host header (DNS rebinding), connections that never finish their headers, a client
gone in the middle of its body, the page's security headers on every route that serves
it, and the token a server reached beyond this machine needs.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import REPO, SUPERHEROES
from serve_helpers import ServerProcess

from tensorguess.serve.http_app import PAGE_POLICY

TOKEN = "k3Jq-8vX_pR2mT9wZ4yB7nC1"  # the shape secrets.token_urlsafe gives


def photo() -> bytes:
    return sorted((SUPERHEROES / "elsa").iterdir())[0].read_bytes()


@pytest.fixture(scope="module")
def local(trained, tmp_path_factory):
    """A server on 127.0.0.1 (no token: the default there) with a 1 s header timeout."""
    base, _, _ = trained
    running = ServerProcess(base, "--header_timeout", "1", "--timeout", "20",
                            log=tmp_path_factory.mktemp("hardening") / "server.log")
    yield running
    if running.process.poll() is None:
        running.stop()


@pytest.fixture(scope="module")
def everywhere(trained, tmp_path_factory):
    """A server on 0.0.0.0 with a token (TG_SERVE_TOKEN) and one more host name allowed."""
    base, _, _ = trained
    os.environ["TG_SERVE_TOKEN"] = TOKEN
    try:
        running = ServerProcess(base, "--host", "0.0.0.0", "--allowed_hosts", "photos.example",
                                log=tmp_path_factory.mktemp("token") / "server.log")
    finally:
        del os.environ["TG_SERVE_TOKEN"]
    yield running
    if running.process.poll() is None:
        running.stop()


def ask(port: int, method: str, path: str, headers: dict, body: bytes | None = None):
    """(status, headers, body) of one request whose headers, Host included, are exactly `headers`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body or b""))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a connection of its own, read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        received = b""
        while part := sock.recv(65536):
            received += part
    return received


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (EOF or a reset), nothing having come before it."""
    sock.settimeout(120)  # a bound for a broken server, not what is measured
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def log_lines(running: ServerProcess, wanted: str, after: int = 0) -> list[str]:
    """The server's log once a line holding `wanted` is in it past its first `after` lines
    (requests are logged after their answers; an earlier test's line must not count)."""
    deadline = time.monotonic() + 60
    while not any(wanted in line for line in running.log.read_text().splitlines()[after:]):
        assert time.monotonic() < deadline, running.log.read_text()
        time.sleep(0.05)
    return running.log.read_text().splitlines()


def test_a_host_that_is_not_this_server_gets_421_in_one_line_and_nothing_runs(local):
    port = local.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        status, _, body = ask(port, "GET", "/labels", {"Host": host})
        assert status == 200 and b"elsa" in body, host
    # A page of evil.example whose name now points at 127.0.0.1 (DNS rebinding) sends its own
    # name; so do other ports' pages, and a Host with no port is port 80's.
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{port + 1}", "localhost",
                 f"127.0.0.1.evil.example:{port}", "a b", ""):
        status, headers, body = ask(port, "POST", "/predict", {"Host": host}, photo())
        assert status == 421, (host, status, body)
        assert body.count(b"\n") == 1 and b"does not answer to the host" in body
        assert headers["Content-Type"] == "application/json"
    # HTTP/1.0 without a Host header at all.
    answer = raw_exchange(port, b"GET /labels HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and b"no Host header" in answer and b"elsa" not in answer
    lines = log_lines(local, '"GET /labels" 400')
    assert sum('"POST /predict" 421 ' in line for line in lines) == 7
    healthz = local.request("GET", "/healthz")[1]
    assert healthz["photos_scored"] == 0  # none of the refused photos was scored


def test_connections_that_never_finish_their_headers_are_closed_by_the_server(local):
    port = local.port
    head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    partial = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    # One that will send its body in time: its head is whole, so the header deadline is not its.
    body = photo()
    complete = socket.create_connection(("127.0.0.1", port))
    complete.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
    for sock in partial:
        sock.sendall(head)
    # A client that sends its headers a byte at a time never lets the connection rest, and is
    # closed all the same (for ever, were each byte to restart the clock).
    trickling = socket.create_connection(("127.0.0.1", port))
    stop = threading.Event()

    def trickle() -> None:
        for byte in head + b"X-Padding: " + b"a" * 1000:
            if stop.wait(0.1):
                return
            try:
                trickling.send(bytes([byte]))
            except OSError:
                return

    threading.Thread(target=trickle, daemon=True).start()
    try:
        assert closed_by_server(trickling)
        for sock in silent + partial:
            assert closed_by_server(sock)
        # The deadline has passed for every one of them; the complete head still gets its answer.
        complete.sendall(body)
        complete.settimeout(60)
        answer = b""
        while not answer.endswith(b"}\n") and (part := complete.recv(65536)):
            answer += part
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"label": "elsa"' in answer
        # A kept-alive connection that starts its next request and stops is closed too.
        complete.sendall(head)
        assert closed_by_server(complete)
    finally:
        stop.set()
        for sock in [*silent, *partial, trickling, complete]:
            sock.close()
    assert local.request("GET", "/healthz")[0] == 200


def test_a_pipelined_request_whose_head_came_whole_is_not_closed_while_its_body_comes(local):
    """The second request's head arrives with the first; its body only after the header deadline
    (1 s) has passed since the first answer: the body has its own --timeout (20 s), so it is
    answered. httptools parses a pipelined head while the first is answered, so a deadline armed
    on that answer closed it."""
    port = local.port
    body = photo()
    before = len(local.log.read_text().splitlines())
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"GET /labels HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
                     f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        received = b""
        while b"elsa" not in received and (part := sock.recv(65536)):
            received += part
        assert received.startswith(b"HTTP/1.1 200 "), received[:200]
        time.sleep(2.5)
        sock.sendall(body)
        while b'"label": "elsa"' not in received and (part := sock.recv(65536)):
            received += part
    assert received.count(b"HTTP/1.1 200 ") == 2 and b'"label": "elsa"' in received, received[-300:]
    # Requests are logged after their answers: wait for its line, or the next test would count it.
    log_lines(local, '"POST /predict" 200 ', after=before)


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_client_gone_mid_body_is_one_log_line_and_not_a_server_error(local, reset):
    port = local.port
    before = len(local.log.read_text().splitlines())
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n\r\n"
                     .encode() + photo()[:1000])
        if reset:  # an abortive close: RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    new = log_lines(local, '"POST /predict" 499 ', after=before)[before:]
    mine = [line for line in new if '"POST /predict"' in line]
    assert len(mine) == 1 and '"POST /predict" 499 0 B' in mine[0], new
    assert all(re.match(r'\S+:\d+ "[A-Z]+ [^"]*" \d{3} \d+ B [\d.]+ ms$', line) for line in new), new
    assert not any("Traceback" in line or " 500 " in line or "Exception" in line for line in new), new
    after = len(local.log.read_text().splitlines())
    assert local.request("POST", "/predict", photo())[0] == 200  # and the server goes on
    log_lines(local, '"POST /predict" 200 ', after=after)  # its line, before the next test counts lines


def test_every_route_serving_the_page_carries_its_csp_and_security_headers(local):
    port = local.port
    host = {"Host": f"127.0.0.1:{port}"}
    answers = {path: ask(port, "GET", path, host) for path in
               ("/", "/page/index.html", "/page/page.js", "/page/page.css", "/labels", "/nothing")}
    root, index = answers["/"], answers["/page/index.html"]
    assert root[0] == index[0] == 200 and root[2] == index[2]  # the page, by either route
    for path, (_, headers, _) in answers.items():
        assert headers["Content-Security-Policy"] == PAGE_POLICY, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path


def test_a_token_server_answers_only_with_its_token(everywhere):
    port = everywhere.port
    host = {"Host": f"127.0.0.1:{port}"}
    status, headers, body = ask(port, "GET", "/labels", host)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer" and body.count(b"\n") == 1
    assert b"needs its token" in body and b"elsa" not in body
    for wrong in (TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "", "é" * 24):
        status, _, body = ask(port, "POST", "/predict", {**host, "Authorization": f"Bearer {wrong}"}, photo())
        assert status == 401 and b"elsa" not in body, wrong
    status, _, body = ask(port, "POST", "/predict", {**host, "Authorization": f"Bearer {TOKEN}"}, photo())
    assert status == 200 and b'"label": "elsa"' in body
    assert ask(port, "GET", "/labels?token=" + TOKEN[:-1], host)[0] == 401
    assert ask(port, "GET", "/labels?token=" + TOKEN, host)[0] == 200

    # The page: opened once with ?token=, it gets a cookie and its address loses the token.
    status, headers, _ = ask(port, "GET", "/?token=" + TOKEN, host)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"tg_serve_token={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with_cookie = {**host, "Cookie": cookie.split(";")[0]}
    for path in ("/", "/page/page.js", "/labels"):
        assert ask(port, "GET", path, with_cookie)[0] == 200, path
    status, _, body = ask(port, "POST", "/predict", with_cookie, photo())  # what the page's fetch sends
    assert status == 200 and b'"label": "elsa"' in body
    assert ask(port, "GET", "/labels", {**host, "Cookie": "tg_serve_token=" + TOKEN[:-1]})[0] == 401


def test_a_server_on_every_address_answers_its_addresses_and_allowed_names_only(everywhere):
    port = everywhere.port
    token = {"Authorization": f"Bearer {TOKEN}"}
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "photos.example", f"PHOTOS.example:{port}"):
        assert ask(port, "GET", "/labels", {**token, "Host": host})[0] == 200, host
    for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}"):
        assert ask(port, "GET", "/labels", {**token, "Host": host})[0] == 421, host


def serve_refused(base: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "TG_SERVE_TOKEN"}
    if token is not None:
        env["TG_SERVE_TOKEN"] = token
    env["PYTHONPATH"] = str(REPO / "src")
    return subprocess.run([sys.executable, "-m", "tensorguess", "serve", str(base), "--port", "0", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_beyond_loopback_a_token_or_no_token_must_be_said_and_bad_settings_are_one_line(trained):
    base, _, _ = trained
    cases = [
        (("--host", "0.0.0.0"), None, "listening on 0.0.0.0, beyond this machine, needs a token"),
        (("--host", "::"), None, "listening on ::, beyond this machine, needs a token"),
        (("--host", "0.0.0.0", "--no_token"), TOKEN, "TG_SERVE_TOKEN is set and --no_token is given"),
        ((), "short", "TG_SERVE_TOKEN must be 16 to 256 characters"),
        ((), "a token with spaces in it", "TG_SERVE_TOKEN must be 16 to 256 characters"),
        (("--allowed_hosts", "ok.example,bad host"), None, "--allowed_hosts: 'bad host' is not a host name"),
        (("--header_timeout", "0"), None, "--header_timeout must be at least 0.001, not 0"),
    ]
    for args, token, message in cases:
        run = serve_refused(base, *args, token=token)
        assert run.returncode == 2 and run.stdout == "", (args, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tensor-guess: "), (args, lines)
        assert message in lines[0], (args, lines)
