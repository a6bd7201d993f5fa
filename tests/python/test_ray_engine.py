"""--engine ray against a real Ray cluster on 127.0.0.1 that the tests start and stop.

Skipped only when Ray (requirements-ray.txt) is not installed and TG_TEST_RAY is not 1;
.ci/run installs the extra and sets it, so in CI these tests run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_V1, SIGN_DIGITS, SUPERHEROES, train_config

try:
    import ray  # noqa: F401
except ImportError:
    if os.environ.get("TG_TEST_RAY") == "1":
        raise
    pytest.skip("Ray is not installed (.venv/bin/pip install -r requirements-ray.txt)",
                allow_module_level=True)

pytestmark = pytest.mark.ray


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _raylets(temp: Path) -> list[int]:
    """Pids of raylets of the cluster whose temp dir is `temp` (ours only, not other clusters)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "raylet" in command and str(temp) in command:
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The address of a head node (2 CPUs) on 127.0.0.1, stopped with `ray stop` after the tests."""
    temp = tmp_path_factory.mktemp("ray")
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    # No token authentication: the driver then needs none whatever ~/.ray holds (a cluster
    # that ray.init started once leaves a token there, which `ray start` would then require).
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    started = subprocess.run(
        [ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--num-cpus", "2", "--disable-usage-stats", "--include-dashboard", "false",
         "--temp-dir", str(temp)], env=env, capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
        deadline = time.monotonic() + 30
        while _raylets(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        leaked = _raylets(temp)
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        assert not leaked, f"ray stop left raylets {leaked}"


def _photos(folder: Path, per_class: int) -> list[Path]:
    return [p for d in sorted(folder.iterdir()) if d.is_dir() for p in sorted(d.iterdir())[:per_class]]


def _extract(paths, cache_dir: Path | None, compute=None, batch_size=8):
    from tensorguess.features import bottlenecks, modules

    spec, loaded = modules.resolve(str(MOBILENET_V1))
    cache = bottlenecks.BottleneckCache(cache_dir, spec) if cache_dir else None
    hook = compute(spec) if compute else None
    return bottlenecks.extract(paths, spec, loaded, cache, batch_size, compute=hook), cache


@pytest.mark.parametrize("photos", ["paths", "bytes"])
def test_features_equal_the_local_engine_and_share_its_store(ray_cluster, tmp_path, photos):
    from tensorguess.engine.ray_engine import RayEngine

    paths = _photos(SUPERHEROES, 8) + _photos(SIGN_DIGITS, 1)
    odd = tmp_path / "odd\n\u00e9 name.jpg"  # a newline, not ASCII
    odd.write_bytes(paths[0].read_bytes() + b"\0")  # another content, the same pixels
    paths.insert(1, odd)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    paths.append(empty)
    local, _ = _extract(paths, None)
    with RayEngine(ray_cluster, photos) as engine:
        remote, cache = _extract(paths, tmp_path / "store", lambda spec: engine.feature_batches(spec, 8))
        # A name that is not UTF-8 crosses Ray's Arrow columns as bytes (the store's stat
        # index cannot hold one: that is the store's, with either engine).
        from tensorguess.features import modules

        weird = Path(os.fsdecode(bytes(tmp_path) + b"/\xff.jpg"))
        weird.write_bytes(paths[0].read_bytes())
        [[(back, vector)]] = list(engine.feature_batches(modules.resolve(str(MOBILENET_V1))[0], 8)([weird]))
    assert remote.computed == local.computed == len(paths) - 1
    assert [s.path for s in remote.skipped] == [s.path for s in local.skipped] == [empty]
    assert remote.skipped[0].reason == local.skipped[0].reason
    assert back == weird and np.abs(vector - local.vector(paths[0])).max() < 1e-5
    difference = np.abs(remote.matrix(paths[:-1]) - local.matrix(paths[:-1])).max()
    assert difference < 1e-5, difference
    # A store the Ray engine filled serves the local engine: nothing computed again.
    again, _ = _extract(paths, tmp_path / "store")
    assert again.computed == 0 and again.from_cache == len(paths) - 1
    np.testing.assert_array_equal(again.matrix(paths[:-1]), remote.matrix(paths[:-1]))


def _ray_worker_pids(actor: str) -> list[int]:
    """Pids of this user's Ray Data workers running `actor` (Ray names the process after it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid != os.getuid():
                    continue
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:  # gone meanwhile
                continue
            if command.startswith("ray::") and actor in command:
                pids.append(int(entry.name))
    return pids


def test_a_worker_killed_in_the_middle_of_a_pass_is_retried(ray_cluster, tmp_path):
    from tensorguess.engine.ray_engine import RayEngine
    from tensorguess.features.store import FILE

    paths = _photos(SIGN_DIGITS, 5)  # 50 photos, batches of 2: 25 tasks
    killed: list[int] = []

    def kill_once_some_are_stored():
        import sqlite3

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            store = next((tmp_path / "store").glob(f"*/{FILE}"), None)
            if store is not None:
                try:
                    with sqlite3.connect(store, timeout=5) as db:
                        stored = db.execute("SELECT count(*) FROM vectors").fetchone()[0]
                except sqlite3.Error:
                    stored = 0
                workers = _ray_worker_pids("FeatureActor")
                if 0 < stored < len(paths) and workers:
                    os.kill(workers[0], signal.SIGKILL)
                    killed.append(stored)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_once_some_are_stored, daemon=True)
    killer.start()
    with RayEngine(ray_cluster) as engine:
        remote, _ = _extract(paths, tmp_path / "store", lambda spec: engine.feature_batches(spec, 2), 2)
    killer.join()
    assert killed, "no worker was killed in the middle of the pass"
    assert remote.computed == len(paths) and not remote.skipped  # none lost, none doubled
    local, _ = _extract(paths, None)
    assert np.abs(remote.matrix(paths) - local.matrix(paths)).max() < 1e-5


@pytest.fixture(scope="session")
def sign_digits_small(tmp_path_factory):
    """Six photos of each sign digit, as links into ../shared (nothing copied)."""
    root = tmp_path_factory.mktemp("sign-digits")
    for label in sorted(p for p in SIGN_DIGITS.iterdir() if p.is_dir()):
        (root / label.name).mkdir()
        for photo in sorted(label.iterdir())[:6]:
            (root / label.name / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="session")
def trained_both_ways(ray_cluster, sign_digits_small, tmp_path_factory):
    """The same training (seed 7) with --engine local and --engine ray: {engine: (dir, log)}."""
    from tensorguess.retrain import retrain

    out = {}
    for engine in ("local", "ray"):
        base = tmp_path_factory.mktemp(f"trained-{engine}")
        cfg = train_config(base, sign_digits_small, how_many_training_steps=200, engine=engine,
                           ray_address=ray_cluster, testing_percentage=20, validation_percentage=20)
        lines: list[str] = []
        retrain(cfg, say=lines.append, warn=lines.append)
        out[engine] = base, json.loads((base / "train_log.json").read_text()), lines
    return out


def test_train_on_ray_gives_the_local_split_and_accuracy(trained_both_ways):
    (_, local, _), (_, remote, lines) = trained_both_ways["local"], trained_both_ways["ray"]
    assert any(line.startswith("Bottlenecks: 60 computed") for line in lines), lines
    assert remote["split_digests"] == local["split_digests"]
    assert remote["split_sizes_per_class"] == local["split_sizes_per_class"]
    assert remote["final_test_accuracy"] == local["final_test_accuracy"]
    assert remote["flags"]["engine"] == "ray" and local["flags"]["engine"] == "local"


def test_guessdir_on_ray_makes_the_same_copies(trained_both_ways, ray_cluster, tmp_path, capsys):
    from tensorguess.cli import main

    base = trained_both_ways["ray"][0]
    source = tmp_path / "source"
    source.mkdir()
    for photo in _photos(SIGN_DIGITS, 2):
        shutil.copyfile(photo, source / f"{photo.parent.name}-{photo.name}")
    (source / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    manifests = {}
    for engine in ("local", "ray"):
        dest = tmp_path / f"sorted-{engine}"
        assert main(["sort", str(base), str(source), str(dest), "--engine", engine,
                     "--ray_address", ray_cluster, "--batch_size", "4"]) == 0
        names = sorted(p.name for p in dest.iterdir())
        records = [json.loads(line) for line in (dest / "guesses.jsonl").read_text().splitlines()]
        manifests[engine] = names, records
    (names, records), (local_names, local_records) = manifests["ray"], manifests["local"]
    assert names == local_names
    assert [{k: v for k, v in r.items() if k not in ("score", "scores")} for r in records] == [
        {k: v for k, v in r.items() if k not in ("score", "scores")} for r in local_records]
    for record, local in zip(records, local_records, strict=True):  # the same graph on the same pixels
        assert record.get("score") == pytest.approx(local.get("score"), abs=1e-6)
    assert len(manifests["ray"][0]) == 21  # 20 copies and the manifest
    # Run again: every photo already sorted by this classifier is skipped, as with local.
    assert main(["sort", str(base), str(source), str(tmp_path / "sorted-ray"), "--engine", "ray",
                 "--ray_address", ray_cluster]) == 0
    assert "Skipped 20 photos" in capsys.readouterr().out


def test_the_default_engine_never_imports_ray():
    code = ("import sys; from tensorguess import cli, retrain; from tensorguess.sort import folder; "
            "from tensorguess.report import evaluate; cli.build_parser().parse_args(['train', '.']); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ, PYTHONPATH=str(
        Path(__file__).resolve().parents[2] / "src")))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items() if k != "created"}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def test_evaluate_on_ray_writes_the_local_report(trained_both_ways, sign_digits_small, ray_cluster,
                                                 tmp_path, capsys):
    from tensorguess.cli import main

    base = trained_both_ways["ray"][0]
    reports = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"report-{engine}"
        assert main(["evaluate", str(base), str(sign_digits_small), str(out), "--engine", engine,
                     "--ray_address", ray_cluster]) == 0
        reports[engine] = json.loads((out / "report.json").read_text())
    assert reports["ray"]["n"] == 60
    leaks = reports["ray"]["leaks"]
    # The photos it trained on are found (the split's digests), and their bottlenecks came back.
    assert leaks["identical"] > 0 and leaks["checked_features"]
    assert _rounded(reports["ray"]) == _rounded(reports["local"])


def test_no_cluster_at_the_address_is_one_line_at_once(trained_both_ways, tmp_path, capsys):
    from tensorguess.cli import main

    (tmp_path / "data").mkdir()
    started = time.monotonic()
    base = trained_both_ways["local"][0]
    assert main(["sort", str(base), str(tmp_path / "data"), str(tmp_path / "out"), "--engine", "ray",
                 "--ray_address", f"127.0.0.1:{_free_port()}"]) == 1
    error = capsys.readouterr().err.strip()
    assert time.monotonic() - started < 60
    assert error.startswith("tensor-guess: no Ray cluster answers at 127.0.0.1:") and "\n" not in error


def test_without_ray_the_error_names_the_install_command(monkeypatch, tmp_path, capsys):
    from tensorguess.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    (tmp_path / "data").mkdir()
    assert main(["train", str(tmp_path), "--engine", "ray"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0
    assert ".venv/bin/pip install -r requirements-ray.txt" in error
