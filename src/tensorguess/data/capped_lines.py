"""Warning lines capped by kind: the first few of each kind, then one line counting the rest.

A labelling export with a thousand bad rows of one kind (a folder of photos not copied over)
must not bury the run's other lines: each kind shows its first `limit` lines, and `close`
adds one "... and N more" line for every kind that went over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

DEFAULT_LIMIT = 5


class CappedLines:
    """Passes lines to `warn`, at most `limit` of each kind; `close()` says how many were held back."""

    def __init__(self, warn: Callable[[str], None], prefix: str, limit: int = DEFAULT_LIMIT) -> None:
        self._warn = warn
        self._prefix = prefix  # "tensor-guess: FILE": what every line starts with
        self._limit = limit
        self.counts: Counter[str] = Counter()  # kind -> lines asked for, shown or not
        self._described: dict[str, str] = {}  # kind -> how the closing line names the rest

    def add(self, kind: str, line: str, rest: str) -> None:
        """A line of `kind`, after the prefix; `rest` names the held-back ones: "photos not found"."""
        self.counts[kind] += 1
        self._described[kind] = rest
        if self.counts[kind] <= self._limit:
            self._warn(f"{self._prefix}: {line}")

    def close(self) -> None:
        for kind, count in self.counts.items():
            if count > self._limit:
                self._warn(f"{self._prefix}: ... and {count - self._limit:,} more {self._described[kind]} "
                           f"({count:,} in all)")
