"""serve's limits, with their defaults in view (the CLI's flags and the HTTP app share them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_batch: int = 32  # photos scored together
    batch_wait_ms: float = 5.0  # how long the first photo of a batch waits for others
    queue_size: int = 64  # photos waiting to be scored; beyond it, 503
    max_body_mb: float = 32.0  # request body size cap (an encoded photo, or a TF Serving request)
    timeout_s: float = 30.0  # to read a body, and to wait for its scores
    header_timeout_s: float = 10.0  # to receive a request's head (line and headers), from the connection

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
