"""Download a compressed TF Hub module into a local cache, once, atomically.

The cache layout is tensorflow_hub's (`<cache>/<sha1 of the URL>/`), so a
TFHUB_CACHE_DIR filled by other TF Hub tools is reused as it is.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

TFHUB_HOST = "https://tfhub.dev/"


class DownloadError(Exception):
    pass


def full_url(handle: str) -> str:
    """A URL for a handle; a bare `publisher/model/...` handle means tfhub.dev."""
    if handle.startswith(("http://", "https://")):
        return handle
    return TFHUB_HOST + handle.lstrip("/")


def compressed_url(url: str) -> str:
    """The URL that serves the module as a .tar.gz (TF Hub's `tf-hub-format=compressed`)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + [("tf-hub-format", "compressed")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def cached_module(handle: str, cache_dir: str | os.PathLike, timeout: float = 60.0) -> Path:
    """The local folder of a module, downloading and unpacking it on first use."""
    url = full_url(handle)
    cache = Path(cache_dir)
    target = cache / hashlib.sha1(url.encode("utf-8")).hexdigest()
    if (target / "saved_model.pb").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{target.name}."))
    try:
        archive = staging / "module.tar.gz"
        fetch(compressed_url(url), archive, timeout)
        unpacked = staging / "module"
        try:
            with tarfile.open(archive) as tar:
                safe_extract(tar, unpacked)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as error:  # a cut-short .tar.gz: EOFError
            raise DownloadError(f"the download is not a module archive ({error})") from error
        if not (unpacked / "saved_model.pb").is_file():
            raise DownloadError("the archive holds no saved_model.pb")
        # Moving a folder into place rewrites its "..": an archive packed read-only needs u+w.
        unpacked.chmod(unpacked.stat().st_mode | 0o700)
        try:
            os.replace(unpacked, target)
        except OSError:
            if not (target / "saved_model.pb").is_file():  # not a concurrent run's copy
                raise
        (cache / f"{target.name}.descriptor.txt").write_text(f"Module: {url}\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def fetch(url: str, destination: Path, timeout: float) -> None:
    """Copy what `url` serves into `destination`; DownloadError says what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
            expected = response.headers.get("Content-Length")
    except urllib.error.HTTPError as error:
        raise DownloadError(f"HTTP {error.code} {error.reason}") from error
    except http.client.IncompleteRead as error:
        raise DownloadError("the download was cut short; try again") from error
    except OSError as error:  # URLError, timeouts, a full disk
        raise DownloadError(str(getattr(error, "reason", error))) from error
    received = destination.stat().st_size
    if expected and expected.isdigit() and int(expected) != received:
        raise DownloadError(f"the download was cut short ({received} of {expected} bytes); try again")


def safe_extract(tar: tarfile.TarFile, folder: Path) -> None:
    """Extract only regular files and folders that stay inside `folder`."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(folder, filter="data")
        return
    root = folder.resolve()
    for member in tar.getmembers():  # Pythons before the extraction filters (3.11.4)
        inside = (root / member.name).resolve()
        if not (member.isfile() or member.isdir()) or not inside.is_relative_to(root):
            raise tarfile.TarError(f"unsafe member {member.name!r}")
    tar.extractall(folder)
