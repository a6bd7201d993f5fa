"""One SQLite file per bottleneck cache folder: the features by content hash, and the stat index.

One file instead of one `.npy` per photo: 20,000 vectors read back in a fraction of
a second instead of seconds, and the augmentation variants to come do not multiply
files. SQLite (the standard library's) in WAL mode gives what a cache needs: each
batch is one transaction, so a kill -9 leaves every entry whole or absent; two
trainings on one cache wait for each other's writes instead of mixing them; any
tool can read it (`sqlite3 features.sqlite 'select count(*) from vectors'`).

The stat index remembers each photo's (path, size, mtime, inode) -> content hash, as
git's index does, so an unchanged photo is never read again to be hashed; one whose
bytes changed changes its size or mtime and is hashed again, and a renamed one is
hashed once more but its features come from the store.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

FILE = "features.sqlite"
BUSY_SECONDS = 600  # another training holds the write lock: wait for it rather than fail
CHUNK = 500  # digests per SELECT ... IN (...): under SQLite's limit on parameters

SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (digest TEXT PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS stats (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                                  inode INTEGER NOT NULL, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

Stat = tuple[int, int, int]  # size, mtime in ns, inode


def stat_key(status: os.stat_result) -> Stat:
    return status.st_size, status.st_mtime_ns, status.st_ino


class FeatureStore:
    """The store of one cache folder. `unwritable` says why it cannot take new entries, if so."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / FILE
        self.unwritable: str | None = _why_unwritable(Path(folder))
        self.db: sqlite3.Connection | None = None
        if self.unwritable is None:
            self.db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL may lose the last batches to a power cut, never mix them.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        elif self.path.exists():
            # A read-only cache (a read-only mount) serves what it holds; nobody writes it.
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)

    def dim(self) -> int | None:
        """The width of the stored vectors (one module per folder: one width), None when empty."""
        if self.db is None:
            return None
        row = self.db.execute("SELECT dim FROM vectors LIMIT 1").fetchone()
        return int(row[0]) if row else None

    def read_into(self, digests: Sequence[str], out: np.ndarray) -> np.ndarray:
        """Copy the stored vector of each `digests[k]` into `out[k]`; which rows were found.

        Straight from SQLite's buffers into the caller's one matrix: at 100k photos no
        second copy of the features (a small array per photo) is ever made. A vector of
        another width, or not finite, counts as missing. `digests` are distinct.
        """
        found = np.zeros(len(digests), dtype=bool)
        if self.db is None or not len(digests):
            return found
        dim = out.shape[1]
        index = {digest: k for k, digest in enumerate(digests)}
        for start in range(0, len(digests), CHUNK):
            chunk = list(digests[start:start + CHUNK])
            rows = self.db.execute(
                f"SELECT digest, dim, vector FROM vectors WHERE digest IN ({','.join('?' * len(chunk))})",
                chunk)
            for digest, width, blob in rows:
                if width == dim and isinstance(blob, bytes) and len(blob) == 4 * dim:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if np.isfinite(vector).all():
                        k = index[digest]
                        out[k] = vector
                        found[k] = True
        return found

    def put_vectors(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store vectors in one transaction: all of them or, killed, none."""
        rows = [(d, int(v.size), np.asarray(v, dtype=np.float32).tobytes()) for d, v in items]
        self._write("INSERT OR REPLACE INTO vectors (digest, dim, vector) VALUES (?, ?, ?)", rows)

    def known_digests(self) -> dict[str, tuple[Stat, str]]:
        """path -> ((size, mtime_ns, inode), digest) for every photo the index remembers."""
        if self.db is None:
            return {}
        return {_path_of(path): ((size, mtime, inode), digest) for path, size, mtime, inode, digest
                in self.db.execute("SELECT path, size, mtime_ns, inode, digest FROM stats")}

    def remember(self, entries: Iterable[tuple[str, Stat, str]]) -> None:
        """Remember absolute paths' stats and digests (any name the system allows)."""
        rows = [(_stored_path(path), *stat, digest) for path, stat, digest in entries]
        self._write("INSERT OR REPLACE INTO stats (path, size, mtime_ns, inode, digest) "
                    "VALUES (?, ?, ?, ?, ?)", rows)

    def meta(self, key: str) -> str | None:
        if self.db is None:
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [(key, value)])

    def _write(self, statement: str, rows: list[tuple]) -> None:
        if not rows or self.db is None or self.unwritable is not None:
            return
        try:
            with self.db:  # one transaction
                self.db.execute("BEGIN IMMEDIATE")
                self.db.executemany(statement, rows)
        except sqlite3.OperationalError as error:
            self.unwritable = str(error)  # a full disk, a lock held for ten minutes


ESCAPED = "bytes:"  # an absolute path starts with "/": no stored name of a real path starts so


def _stored_path(path: str) -> str:
    """`path` as SQLite's UTF-8 text holds it. A name that is not UTF-8 (Python carries its
    bytes as lone surrogates, which SQLite refuses) is stored as the hex of its bytes."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return ESCAPED + os.fsencode(path).hex()


def _path_of(stored: str) -> str:
    return os.fsdecode(bytes.fromhex(stored[len(ESCAPED):])) if stored.startswith(ESCAPED) else stored


def _why_unwritable(folder: Path) -> str | None:
    """None when new entries can be written into `folder`; else the system's reason."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return None
    except OSError as error:
        return error.strerror or str(error)
