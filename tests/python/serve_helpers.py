"""What the serve tests share: a real server process on a free 127.0.0.1 port, and an HTTP client."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _as_from_a_terminal() -> None:
    """In the child: Ctrl-C and SIGTERM delivered as a terminal delivers them.

    The server keeps ignoring a signal it was started ignoring (serve/server.py), which is
    right for `serve.sh &` in a script; but a library loaded earlier in this pytest process
    (the whole suite runs in one) may have left SIGINT ignored or blocked, and both survive
    exec: the Ctrl-C test then tested that library, not the server.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


class ServerProcess:
    """`python -m tensorguess serve DIR --port 0 ARGS...`, started now; `port` once it serves."""

    def __init__(self, folder: Path, *args: str, log: Path):
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.log = log
        self._stderr = open(log, "w")  # kept open for the server's lifetime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tensorguess", "serve", str(folder), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env, preexec_fn=_as_from_a_terminal)
        lines: queue.Queue = queue.Queue()
        self.lines = lines  # what it prints after the first line (serve's other start-up lines)
        threading.Thread(target=lambda: [lines.put(line) for line in self.process.stdout] + [lines.put("")],
                         daemon=True).start()
        self.first_line = lines.get(timeout=180)  # TensorFlow's start and the graph's first run
        assert self.first_line.startswith("Serving "), (self.first_line, log.read_text())
        self.url = self.first_line.split(" at ")[1].split()[0]
        self.port = int(self.url.rstrip("/").rsplit(":", 1)[1])

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send `sig`, wait for the end: (exit status, everything it wrote on stderr)."""
        self.process.send_signal(sig)
        status = self.process.wait(timeout=60)
        self._stderr.close()
        return status, self.log.read_text()

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                timeout: float = 60) -> tuple[int, dict, bytes]:
        return request(self.port, method, path, body, headers, timeout)


def request(port: int, method: str, path: str, body=None, headers: dict | None = None,
            timeout: float = 60) -> tuple[int, dict, bytes]:
    """(status, the JSON answer or {}, the raw answer), on a connection of its own."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        document = json.loads(raw)
    except ValueError:
        document = {}
    return response.status, document, raw


def multipart(field: str, name: str, data: bytes, content_type: str = "image/jpeg") -> tuple[bytes, str]:
    """A multipart/form-data body holding one file, as a browser's form sends it: (body, content type)."""
    boundary = "tensorguess-test-boundary-7f3a"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
