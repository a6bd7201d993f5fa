"""Writing files so that a killed run never leaves a half-written one behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place.

    The file gets the permissions a plain open() would give it (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:  # the write too: on a full disk the part written must not stay behind, hidden
        with tmp:
            tmp.write(data)
        os.chmod(tmp.name, 0o666 & ~_umask())
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
