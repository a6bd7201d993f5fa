"""download.py and module resolution against a real HTTP server on 127.0.0.1.

The server hands out a .tar.gz packed here from the MobileNet v1 SavedModel in
../shared, laid out the way TF Hub serves `?tf-hub-format=compressed`.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tensorguess.features import modules
from tensorguess.features.download import (
    DownloadError,
    cached_module,
    compressed_url,
    full_url,
)
from tensorguess.features.modules import ModuleError, guess_input_size

SHARED = Path(__file__).resolve().parents[3] / "shared"
MOBILENET_V1 = SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector"
MODULE_PATH = "/google/imagenet/mobilenet_v1_100_224/feature_vector/5"


def normal_modes(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """As TF Hub's archives are: owned by nobody in particular, rw-r--r-- / rwxr-xr-x."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def pack_module(source: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(source.rglob("*")):
            if path.name == "fixture_info.json":
                continue
            tar.add(path, arcname=path.relative_to(source).as_posix(), recursive=False, filter=normal_modes)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


class Server:
    """Routes path -> (status, body); records (path, query) of every request."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.cut_short: set[str] = set()  # paths whose body stops halfway, as a dropped connection does
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                parts = urllib.parse.urlsplit(self.path)
                with server.lock:
                    server.requests.append((parts.path, urllib.parse.parse_qs(parts.query)))
                status, body = server.routes.get(parts.path, (404, b"<html>Not Found</html>"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/x-tar" if status == 200 else "text/html")
                self.end_headers()
                if parts.path in server.cut_short:
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def module_archive():
    if not (MOBILENET_V1 / "saved_model.pb").is_file():
        pytest.fail(f"{MOBILENET_V1} is missing")
    return pack_module(MOBILENET_V1)


@pytest.fixture
def server(module_archive, monkeypatch):
    # Never let a proxy from the environment see these requests.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    running = Server()
    running.routes[MODULE_PATH] = (200, module_archive)
    yield running
    running.close()


def files_below(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


# --- the happy path ---------------------------------------------------------------------------------

def test_download_unpacks_into_sha1_of_the_url_once(server, tmp_path):
    cache = tmp_path / "cache"
    url = server.url + MODULE_PATH
    folder = cached_module(url, cache)
    assert folder == cache / hashlib.sha1(url.encode()).hexdigest()
    assert (folder / "saved_model.pb").read_bytes() == (MOBILENET_V1 / "saved_model.pb").read_bytes()
    assert (folder / "variables" / "variables.index").is_file()
    assert (folder / "variables" / "variables.data-00000-of-00001").stat().st_size == (
        MOBILENET_V1 / "variables" / "variables.data-00000-of-00001").stat().st_size
    assert server.requests == [(MODULE_PATH, {"tf-hub-format": ["compressed"]})]
    # Nothing half-done is left beside it: just the module and tensorflow_hub's descriptor.
    assert sorted(p.name for p in cache.iterdir()) == [folder.name, f"{folder.name}.descriptor.txt"]
    assert url in (cache / f"{folder.name}.descriptor.txt").read_text()

    assert cached_module(url, cache) == folder
    assert server.hits(MODULE_PATH) == 1


@pytest.mark.parametrize("extraction_filters", [True, False])
def test_an_archive_with_a_read_only_top_folder_is_moved_into_place(
        server, tmp_path, monkeypatch, extraction_filters):
    # Renaming a folder into the cache needs write permission on it for a non-root user.
    # Pythons without extraction filters (Debian bookworm's 3.11.2) apply the "." mode.
    if not extraction_filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        top = tarfile.TarInfo(".")
        top.type, top.mode = tarfile.DIRTYPE, 0o555
        tar.addfile(top)
        with tarfile.open(fileobj=io.BytesIO(pack_module(MOBILENET_V1))) as module:
            for member in module.getmembers():
                tar.addfile(member, module.extractfile(member) if member.isfile() else None)
    server.routes["/read-only/1"] = (200, buffer.getvalue())
    folder = cached_module(server.url + "/read-only/1", tmp_path / "cache")
    assert (folder / "saved_model.pb").is_file()
    assert folder.stat().st_mode & 0o700 == 0o700


def test_parallel_first_downloads_agree(server, tmp_path):
    cache = tmp_path / "cache"
    url = server.url + MODULE_PATH
    results: list[Path | BaseException] = []

    def fetch():
        try:
            results.append(cached_module(url, cache))
        except BaseException as error:  # noqa: BLE001 - reported below
            results.append(error)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    expected = cache / hashlib.sha1(url.encode()).hexdigest()
    assert results == [expected] * 4
    assert sorted(p.name for p in cache.iterdir()) == [expected.name, f"{expected.name}.descriptor.txt"]


def test_resolve_downloads_through_tfhub_cache_dir_and_loads(server, tmp_path, monkeypatch):
    import tensorflow as tf

    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    url = server.url + MODULE_PATH
    spec, loaded = modules.resolve(url)
    assert spec.path == str(cache / hashlib.sha1(url.encode()).hexdigest())
    assert spec.input_size == 224
    assert modules.signature_input_size(loaded) == 224  # from the module itself, not its name
    assert spec.value_range == (0.0, 1.0)
    features = modules.feature_function(loaded)(tf.random.uniform([1, 224, 224, 3], seed=1))
    assert tuple(features.shape) == (1, 1024)
    assert server.hits(MODULE_PATH) == 1

    again, _ = modules.resolve(url)
    assert again == spec
    assert server.hits(MODULE_PATH) == 1


def test_compressed_url_keeps_an_existing_query():
    url = compressed_url("https://example.com/m/1?token=a%20b&x=1")
    parts = urllib.parse.urlsplit(url)
    assert parts.path == "/m/1"
    assert urllib.parse.parse_qs(parts.query) == {
        "token": ["a b"], "x": ["1"], "tf-hub-format": ["compressed"]}
    assert full_url("google/imagenet/inception_v3/feature_vector/5") == (
        "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5")
    assert full_url("http://h/x") == "http://h/x"


# --- failures ---------------------------------------------------------------------------------------

def assert_cache_clean(cache: Path, url: str) -> None:
    """No module folder, no staging folder and no descriptor for a failed download."""
    assert not (cache / hashlib.sha1(url.encode()).hexdigest()).exists()
    if cache.exists():
        assert list(cache.iterdir()) == []


def test_404_is_a_clear_error(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    url = server.url + "/google/no/such/module/1"
    with pytest.raises(DownloadError, match="HTTP 404 Not Found"):
        cached_module(url, cache)
    assert_cache_clean(cache, url)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    with pytest.raises(ModuleError) as caught:
        modules.resolve(url)
    message = str(caught.value)
    assert url in message and "Not Found" in message and "--tfhub_module" in message


def test_nothing_listening_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()  # the port is now free: connecting is refused
    with pytest.raises(DownloadError, match="refused"):
        cached_module(f"http://127.0.0.1:{port}/m/1", tmp_path / "cache")


@pytest.mark.parametrize("body", [b"<html><body>Please sign in</body></html>", b"", b"\x1f\x8b\x08garbage"])
def test_a_download_that_is_not_a_tar_is_an_error(server, tmp_path, body):
    server.routes["/html/1"] = (200, body)
    cache = tmp_path / "cache"
    url = server.url + "/html/1"
    with pytest.raises(DownloadError, match="not a module archive"):
        cached_module(url, cache)
    assert_cache_clean(cache, url)


@pytest.mark.parametrize("cut", ["connection", "archive"])
def test_a_download_cut_short_is_an_error(server, module_archive, tmp_path, monkeypatch, cut):
    # Either the connection drops halfway (Content-Length says more) or the server sends half a .tar.gz.
    if cut == "connection":
        server.routes["/short/1"] = (200, module_archive)
        server.cut_short.add("/short/1")
    else:
        server.routes["/short/1"] = (200, module_archive[: len(module_archive) // 2])
    cache = tmp_path / "cache"
    url = server.url + "/short/1"
    with pytest.raises(DownloadError, match="cut short" if cut == "connection" else "not a module archive"):
        cached_module(url, cache)
    assert_cache_clean(cache, url)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(cache))
    with pytest.raises(ModuleError, match="cannot download module"):
        modules.resolve(url)


def test_a_tar_without_saved_model_is_an_error(server, tmp_path):
    server.routes["/nested/1"] = (200, tar_of({"model/saved_model.pb": b"x", "README": b"hi"}))
    cache = tmp_path / "cache"
    url = server.url + "/nested/1"
    with pytest.raises(DownloadError, match="no saved_model.pb"):
        cached_module(url, cache)
    assert_cache_clean(cache, url)


@pytest.mark.parametrize(
    "members, symlinks",
    [
        ({"saved_model.pb": b"x", "../evil": b"owned"}, None),
        ({"saved_model.pb": b"x", "../../../evil": b"owned"}, None),
        ({"saved_model.pb": b"x", "variables/../../../../evil": b"owned"}, None),
        ({"../../../evil": b"owned", "saved_model.pb": b"x"}, None),
        ({"saved_model.pb": b"x"}, {"variables": "../../../.."}),
    ],
    ids=["dotdot", "dotdot-deep", "dotdot-inside-folder", "evil-first", "symlink-out"],
)
def test_a_tar_that_writes_outside_is_refused(server, tmp_path, members, symlinks):
    work = tmp_path / "deep" / "er" / "still"
    cache = work / "cache"
    server.routes["/evil/1"] = (200, tar_of(members, symlinks))
    url = server.url + "/evil/1"
    before = files_below(tmp_path)
    with pytest.raises(DownloadError, match="not a module archive"):
        cached_module(url, cache)
    assert_cache_clean(cache, url)
    after = files_below(tmp_path)
    assert after - before <= {"deep", "deep/er", "deep/er/still", "deep/er/still/cache"}
    assert not any(Path(name).name == "evil" for name in after)


def test_absolute_member_stays_inside_or_is_refused(server, tmp_path):
    outside = tmp_path / "outside-evil"
    server.routes["/abs/1"] = (200, tar_of({"saved_model.pb": b"x", str(outside): b"owned"}))
    cache = tmp_path / "cache"
    try:
        cached_module(server.url + "/abs/1", cache)
    except DownloadError:
        pass
    assert not outside.exists()


# --- resolution without a network -------------------------------------------------------------------

@pytest.mark.parametrize(
    "handle, size",
    [
        ("https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5", 299),
        ("inception_v3", 299),
        ("https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5", 224),
        ("https://tfhub.dev/google/imagenet/mobilenet_v2_140_224/feature_vector/5", 224),
        ("https://tfhub.dev/google/imagenet/mobilenet_v2_035_128/feature_vector/5", 128),
        ("https://tfhub.dev/google/imagenet/mobilenet_v1_050_160/feature_vector/5", 160),
        ("https://tfhub.dev/google/imagenet/mobilenet_v3_small_100_224/feature_vector/5", 224),
        ("https://tfhub.dev/google/imagenet/mobilenet_v3_large_075_224/feature_vector/5", 224),
        ("https://tfhub.dev/tensorflow/efficientnet/b0/feature-vector/1", 224),
        ("https://tfhub.dev/tensorflow/efficientnet/b3/feature-vector/1", 300),
        ("https://tfhub.dev/tensorflow/efficientnet/b7/feature-vector/1", 600),
        ("https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_ft1k_b3/feature_vector/2", 300),
        ("https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_s/feature_vector/2", 384),
        ("https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet21k_xl/feature_vector/2", 512),
        ("https://tfhub.dev/google/imagenet/efficientnet_v2_imagenet1k_m/feature_vector/2", 480),
        ("https://tfhub.dev/google/imagenet/inception_resnet_v2/feature_vector/5", 299),
        ("https://tfhub.dev/google/imagenet/resnet_v2_50/feature_vector/5", 224),
        ("https://tfhub.dev/google/bit/m-r50x1/1", 224),
        ("/work/shared/models/mobilenet_v1_100_224/feature_vector", 224),
        ("https://tfhub.dev/google/some/unknown/model/1", None),
    ],
)
def test_guess_input_size(handle, size):
    assert guess_input_size(handle) == size


def test_guess_input_size_of_inception_v2_is_224():
    assert guess_input_size("https://tfhub.dev/google/imagenet/inception_v2/feature_vector/5") == 224


def test_resolve_of_a_folder_without_saved_model_is_a_module_error(tmp_path):
    folder = tmp_path / "mobilenet_v2_100_224"
    (folder / "variables").mkdir(parents=True)
    with pytest.raises(ModuleError, match="no saved_model.pb"):
        modules.resolve(str(folder))


def test_resolve_of_nonsense_is_a_module_error(tmp_path):
    with pytest.raises(ModuleError, match="neither an existing local folder nor a TF Hub URL"):
        modules.resolve(str(tmp_path / "Not There" / "model"))


def test_resolve_of_a_local_folder_needs_no_server(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "unused"))
    spec, _ = modules.resolve(str(MOBILENET_V1))
    assert spec.path == str(MOBILENET_V1.resolve())
    assert spec.input_size == 224
    assert not (tmp_path / "unused").exists()
