"""The feature store: one SQLite file per cache, the stat index, the old cache imported, kill -9
and two writers at once."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_V1, REPO, SIGN_DIGITS, SUPERHEROES

from tensorguess.features import bottlenecks, modules
from tensorguess.features.store import FILE


@pytest.fixture(scope="module")
def module():
    return modules.resolve(str(MOBILENET_V1))


def photos_in(folder, count, source=SUPERHEROES / "elsa"):
    folder.mkdir(parents=True, exist_ok=True)
    for photo in sorted(source.iterdir())[:count]:
        shutil.copy(photo, folder / photo.name)
    return sorted(folder.iterdir())


def counting_hashes(monkeypatch):
    calls = []
    real = bottlenecks.content_hash
    monkeypatch.setattr(bottlenecks, "content_hash", lambda path: calls.append(path) or real(path))
    return calls


def test_an_unchanged_photo_is_not_read_again_a_changed_one_is_recomputed(tmp_path, module, monkeypatch):
    spec, loaded = module
    photos = photos_in(tmp_path / "photos", 4)
    cache = bottlenecks.BottleneckCache(tmp_path / "cache", spec)
    first = bottlenecks.extract(photos, spec, loaded, cache)
    assert first.computed == 4
    hashed = counting_hashes(monkeypatch)
    again = bottlenecks.extract(photos, spec, loaded, cache)
    assert (again.computed, again.from_cache, hashed) == (0, 4, [])
    # Touched but unchanged: read once more to hash it, not recomputed.
    os.utime(photos[0], ns=(10**18, 10**18))
    touched = bottlenecks.extract(photos, spec, loaded, cache)
    assert (touched.computed, hashed) == (0, [photos[0]])
    # Renamed: hashed, its features free.
    renamed = photos[1].with_name("renamed.jpg")
    photos[1].rename(renamed)
    photos[1] = renamed
    moved = bottlenecks.extract(photos, spec, loaded, cache)
    assert moved.computed == 0 and hashed[-1] == renamed
    # Changed bytes (same name, same size even: the mtime changes): recomputed.
    other = sorted((SUPERHEROES / "darth_vader").iterdir())[0]
    shutil.copy(other, photos[2])
    changed = bottlenecks.extract(photos, spec, loaded, cache)
    assert changed.computed == 1 and changed.from_cache == 3
    with sqlite3.connect(cache.dir / FILE) as db:
        assert db.execute("SELECT count(*) FROM vectors").fetchone()[0] == 5


def test_a_cache_of_npy_files_is_imported_once_and_left_alone(tmp_path, module):
    spec, loaded = module
    photos = photos_in(tmp_path / "photos", 3)
    fresh = bottlenecks.extract(photos, spec, loaded, None)
    folder = tmp_path / "cache" / spec.cache_name
    for path in photos:
        digest = fresh.digests[path]
        (folder / digest[:2]).mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, fresh.vector(path), allow_pickle=False)
        (folder / digest[:2] / f"{digest}.npy").write_bytes(buffer.getvalue())
    (folder / "ab").mkdir(exist_ok=True)
    (folder / "ab" / ("ab" + "0" * 38 + ".npy")).write_bytes(b"damaged")
    before = sorted((p.name, p.read_bytes()) for p in folder.glob("??/*.npy"))
    cache = bottlenecks.BottleneckCache(tmp_path / "cache", spec)
    result = bottlenecks.extract(photos, spec, loaded, cache)
    assert (result.computed, result.from_cache) == (0, 3)
    assert cache.store.meta(bottlenecks.OLD_FORMAT_IMPORTED) == "3"
    assert sorted((p.name, p.read_bytes()) for p in folder.glob("??/*.npy")) == before


EXTRACT = """
import sys
from pathlib import Path
from tensorguess.features import bottlenecks, modules
spec, loaded = modules.resolve(sys.argv[1])
paths = sorted(p for p in Path(sys.argv[2]).rglob("*") if p.is_file())
cache = bottlenecks.BottleneckCache(Path(sys.argv[3]), spec)
result = bottlenecks.extract(paths, spec, loaded, cache, batch_size=16)
print(result.computed, result.from_cache, flush=True)
"""


def run_extract(photos, cache_root, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-c", EXTRACT, str(MOBILENET_V1), str(photos), str(cache_root)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, **kwargs)


def stored(cache_root):
    total = 0
    for path in cache_root.glob(f"*/{FILE}"):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            total += db.execute("SELECT count(*) FROM vectors").fetchone()[0]
    return total


def test_a_kill_in_the_middle_leaves_whole_entries_and_the_rerun_computes_only_the_rest(tmp_path, module):
    spec, loaded = module
    photos = tmp_path / "photos"
    for digit in ("0", "1", "2"):
        photos_in(photos / digit, 100, SIGN_DIGITS / digit)
    cache_root = tmp_path / "cache"
    run = run_extract(photos, cache_root)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not cache_root.exists() or stored(cache_root) < 32):
        time.sleep(0.2)
    run.send_signal(signal.SIGKILL)
    run.wait()
    kept = stored(cache_root)
    assert 32 <= kept < 300
    with sqlite3.connect(cache_root / spec.cache_name / FILE) as db:
        for dim, blob in db.execute("SELECT dim, vector FROM vectors"):
            vector = np.frombuffer(blob, dtype=np.float32)
            assert dim == 1024 and vector.size == dim and np.all(np.isfinite(vector))
    rerun = run_extract(photos, cache_root)
    computed, from_cache = map(int, rerun.communicate(timeout=300)[0].split())
    assert (computed, from_cache) == (300 - kept, kept)


def test_two_extractions_into_one_cache_at_once_both_finish_and_agree(tmp_path, module):
    spec, _ = module
    photos = tmp_path / "photos"
    for digit in ("3", "4"):
        photos_in(photos / digit, 60, SIGN_DIGITS / digit)
    cache_root = tmp_path / "cache"
    runs = [run_extract(photos, cache_root) for _ in range(2)]
    outputs = [run.communicate(timeout=300)[0].split() for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert all(int(computed) + int(from_cache) == 120 for computed, from_cache in outputs)
    assert stored(cache_root) == 120


def test_a_photo_whose_name_is_not_utf8_is_remembered_like_any_other(tmp_path, module, monkeypatch):
    """Its name reaches Python as lone surrogates, which SQLite's text refuses: the whole pass
    failed with UnicodeEncodeError. A name made to look like the escaped form is its own entry."""
    spec, loaded = module
    photos = photos_in(tmp_path / "photos", 2)
    odd = Path(os.fsdecode(bytes(tmp_path / "photos") + b"/caf\xe9 latin-1.jpg"))
    photos[0].rename(odd)
    lookalike = tmp_path / "photos" / ("bytes:" + os.fsencode(odd).hex())
    photos[1].rename(lookalike)
    cache = bottlenecks.BottleneckCache(tmp_path / "cache", spec)
    first = bottlenecks.extract([odd, lookalike], spec, loaded, cache)
    assert first.computed == 2 and first.readable(odd) and first.readable(lookalike)
    hashed = counting_hashes(monkeypatch)
    again = bottlenecks.extract([odd, lookalike], spec, loaded, cache)
    assert (again.computed, again.from_cache, hashed) == (0, 2, []), "both found in the stat index"
    assert cache.store.known_digests().keys() == {str(odd), str(lookalike)}
