"""--engine ray against --engine local on one machine, and what the driver can take at scale.

    python bench/ray_engine.py [--out bench/results/ray_engine.json] [--rounds 2]
                               [--cpus N] [--store_rows 20000] [--search_sizes 5000 10000 20000]

Needs Ray (`.venv/bin/pip install -r requirements-ray.txt`). Starts a Ray head on
127.0.0.1 (`ray start --head --num-cpus N`, N = the machine's cores by default, a temp
dir of its own) and stops it at the end. On every sign-digits and superheroes photo
(2,018), MobileNet v1, no cache, the ways alternating --rounds times:

  local       bottlenecks.extract(...) in this process (the baseline): decoding threads
              ahead of TensorFlow on every core;
  ray_paths   the same call with --engine ray's hook: Ray Data map_batches over an actor
              pool of N actors (one CPU, one TensorFlow thread, one module each), the
              workers reading the photos by path;
  ray_bytes   the same, the driver reading every photo and sending its bytes;
  ray_paths_startup  ray_paths on the first --startup_photos photos only: what a pool
              costs before its first photo, so that the rest of a full pass is what
              each photo costs a worker (the scale-out estimate's per-worker figure).

For each: wall seconds of the whole pass (actors' start-up and the module's loading
included, as a user pays it), seconds to the first batch back, the steady rate
(photos after the first batch over the time after it), and CPU seconds: this process
(time.process_time) plus every process of the cluster (utime + stime from /proc,
sampled every 0.2 s, descendants of the cluster's own processes).

The driver's ceilings: FeatureStore.put_vectors' insert rate (1,024-d vectors, 32 a
transaction as extract writes them, and 1,024 a transaction), and the near-duplicate
search the data checks run (near_duplicates.find_pairs, default cap) on synthetic
ReLU-like vectors at --search_sizes, its growth exponent fitted on them. From these,
`estimate` gives the hours for 1M and 10M photos on 1, 10 and 100 workers and where the
driver becomes the bottleneck (`--estimate_only` recomputes it from --out).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import common

TICKS = os.sysconf("SC_CLK_TCK")


def start_cluster(temp: Path, cpus: int) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = str(Path(sys.executable).parent / "ray")
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--num-cpus", str(cpus), "--disable-usage-stats", "--include-dashboard", "false",
                    "--temp-dir", str(temp)], check=True, capture_output=True,
                   env=dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled"))
    return f"127.0.0.1:{port}"


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds) of this user's processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS)
    return found


def cluster_roots(temp: Path) -> set[int]:
    roots = set()
    for pid in _processes():
        try:
            if str(temp).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                roots.add(pid)
        except OSError:
            pass
    return roots


class ClusterCpu:
    """CPU seconds the cluster's processes (and their descendants) spend while it runs."""

    def __init__(self, roots: set[int]):
        self.roots = roots
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _members(self, table):
        members = set(self.roots)
        changed = True
        while changed:
            changed = False
            for pid, (parent, _) in table.items():
                if parent in members and pid not in members:
                    members.add(pid)
                    changed = True
        return members

    def _sample(self):
        while self.running:
            self.snapshot()
            time.sleep(0.2)

    def snapshot(self):
        table = _processes()
        for pid in self._members(table):
            if pid in table:
                self.last[pid] = table[pid][1]

    def __enter__(self):
        table = _processes()
        self.first = {pid: table[pid][1] for pid in self._members(table) if pid in table}
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.snapshot()

    def seconds(self) -> float:
        return sum(value - self.first.get(pid, 0.0) for pid, value in self.last.items())


def one_pass(paths, spec, loaded, compute, roots) -> dict:
    from tensorguess.features import bottlenecks

    arrivals = []

    def timed_hook(missing):
        for entries in compute(missing):
            arrivals.append((time.perf_counter(), len(entries)))
            yield entries

    def local_hook(missing):
        for entries in bottlenecks._local_batches(missing, spec, loaded, 32, None):
            arrivals.append((time.perf_counter(), len(entries)))
            yield entries

    cpu = time.process_time()
    with ClusterCpu(roots) as cluster:
        started = time.perf_counter()
        result = bottlenecks.extract(paths, spec, loaded, None, 32,
                                     compute=timed_hook if compute else local_hook)
        wall = time.perf_counter() - started
    first_at, first_count = arrivals[0]
    after = sum(count for _, count in arrivals[1:])
    return {"wall_s": round(wall, 2), "first_batch_s": round(first_at - started, 2),
            "steady_images_per_s": round(after / (arrivals[-1][0] - first_at), 1) if after else None,
            "images_per_s": round(result.computed / wall, 1), "computed": result.computed,
            "driver_cpu_s": round(time.process_time() - cpu, 2),
            "cluster_cpu_s": round(cluster.seconds(), 2), "features": result}


def store_rate(rows: int, per_transaction: int) -> float:
    from tensorguess.features.store import FeatureStore

    vectors = np.random.default_rng(0).random((rows, 1024), dtype=np.float32)
    folder = Path(tempfile.mkdtemp(prefix="tg-store-bench-"))
    try:
        store = FeatureStore(folder)
        started = time.perf_counter()
        for start in range(0, rows, per_transaction):
            end = min(start + per_transaction, rows)
            store.put_vectors((f"{k:040x}", vectors[k]) for k in range(start, end))
        return rows / (time.perf_counter() - started)
    finally:
        shutil.rmtree(folder)


def search_cpu(count: int) -> dict:
    from tensorguess.features.near_duplicates import find_pairs

    rng = np.random.default_rng(count)
    vectors = np.clip(rng.normal(0.3, 0.6, (count, 1024)).astype(np.float32), 0, 6)
    digests = [f"{k:040x}" for k in range(count)]
    wall, cpu, pairs = common.measured(find_pairs, digests, vectors, 0.90)
    return {"n": count, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "pairs": len(pairs)}


def estimate(results: dict) -> dict:
    """Hours for 1M and 10M photos on 1, 10 and 100 one-CPU workers, from the measured figures.

    A worker's cost per photo is the cluster's CPU seconds of a full ray_paths pass less
    those of the start-up pass, over the photos between them (the cluster's own daemons
    included: an upper bound). The driver's cost per photo (hashing each photo, the store
    lookups, receiving and storing the vectors) is its CPU seconds in the same difference;
    its ceiling is its cores over that. The near-duplicate search is fitted as
    cpu = a * n ** exponent on the measured sizes.
    """
    photos = results["photos"]
    worker, driver = [], []
    for found in results["rounds"]:
        full, small = found["ray_paths"], found["ray_paths_startup"]
        extra = photos - small["computed"]
        worker.append((full["cluster_cpu_s"] - small["cluster_cpu_s"]) / extra)
        driver.append((full["driver_cpu_s"] - small["driver_cpu_s"]) / extra)
    per_photo, driver_per_photo = min(worker), min(driver)
    local = min(f["local"]["driver_cpu_s"] + f["local"]["cluster_cpu_s"] for f in results["rounds"]) / photos
    startup = min(f["ray_paths_startup"]["wall_s"] for f in results["rounds"])
    search = results["near_duplicate_search"]
    last = search["sizes"][-1]
    factor = last["cpu_s"] / last["n"] ** search["growth_exponent"]
    hours = {}
    for count in (1_000_000, 10_000_000):
        hours[str(count)] = {
            **{f"{workers}_workers": round(count * per_photo / workers / 3600 + startup / 3600, 2)
               for workers in (1, 10, 100)},
            "driver_floor_h_per_core": round(count * driver_per_photo / 3600, 2),
            "store_writes_h": round(count / results["store_rows_per_s"]["32"] / 3600, 3),
            "near_duplicate_search_cpu_h": round(factor * count ** search["growth_exponent"] / 3600, 1),
            "near_duplicate_search_cpu_h_quadratic": round(
                last["cpu_s"] * (count / last["n"]) ** 2 / 3600, 1),
        }
    return {"worker_cpu_s_per_photo": round(per_photo, 4), "worker_photos_per_s": round(1 / per_photo, 1),
            "local_cpu_s_per_photo": round(local, 4),
            "driver_cpu_s_per_photo": round(driver_per_photo, 5),
            "driver_photos_per_s_per_core": round(1 / driver_per_photo),
            "workers_one_driver_core_feeds": round(per_photo / driver_per_photo),
            "workers_the_store_feeds": round(results["store_rows_per_s"]["32"] * per_photo),
            "pool_start_s": startup, "hours": hours}


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--rounds", type=int, default=2)
    parse.add_argument("--cpus", type=int, default=os.cpu_count())
    parse.add_argument("--store_rows", type=int, default=20000)
    parse.add_argument("--startup_photos", type=int, default=64)
    parse.add_argument("--search_sizes", type=int, nargs="+", default=[5000, 10000, 20000])
    parse.add_argument("--estimate_only", action="store_true",
                       help="recompute the estimate in --out from its measured figures, measure nothing")
    args = parse.parse_args()
    if args.estimate_only:
        results = json.loads(args.out.read_text())
        results["estimate"] = estimate(results)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results["estimate"], indent=1))
        return
    common.quiet_tensorflow()
    from tensorguess.engine.ray_engine import RayEngine
    from tensorguess.features import modules

    paths = common.image_files(*sorted(p for p in common.SIGN_DIGITS.iterdir() if p.is_dir()),
                               *sorted(p for p in common.SUPERHEROES.iterdir() if p.is_dir()))
    common.warm_page_cache(paths)
    spec, loaded = modules.resolve(str(common.MODULE))
    results: dict = {"machine": common.machine(), "photos": len(paths), "cpus": args.cpus, "rounds": []}
    temp = Path(tempfile.mkdtemp(prefix="tg-ray-bench-"))
    address = start_cluster(temp, args.cpus)
    try:
        roots = cluster_roots(temp)
        one_pass(paths[:64], spec, loaded, None, set())  # trace the local function once
        for _ in range(args.rounds):
            found = {"local": one_pass(paths, spec, loaded, None, roots)}
            # What an actor pool costs before its first photo (processes, TensorFlow, the
            # module): a pass over a few photos; the rest of a full pass is per photo.
            with RayEngine(address, "paths") as engine:
                small = one_pass(paths[:args.startup_photos], spec, loaded,
                                 engine.feature_batches(spec, 32), roots)
            small.pop("features")
            found["ray_paths_startup"] = small
            for photos in ("paths", "bytes"):
                with RayEngine(address, photos) as engine:
                    found[f"ray_{photos}"] = one_pass(paths, spec, loaded,
                                                      engine.feature_batches(spec, 32), roots)
                found[f"ray_{photos}"]["actors"] = args.cpus
            base = found["local"].pop("features").matrix(paths)
            for name in ("ray_paths", "ray_bytes"):
                way = found[name]
                way["max_abs_difference"] = float(np.abs(way.pop("features").matrix(paths) - base).max())
                way["local_over_this_wall"] = round(found["local"]["wall_s"] / way["wall_s"], 3)
            print(found, flush=True)
            results["rounds"].append(found)
    finally:
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
    results["store_rows_per_s"] = {str(n): round(store_rate(args.store_rows, n)) for n in (32, 1024)}
    searches = [search_cpu(n) for n in args.search_sizes]
    first, last = searches[0], searches[-1]
    exponent = math.log(last["cpu_s"] / first["cpu_s"]) / math.log(last["n"] / first["n"])
    results["near_duplicate_search"] = {"sizes": searches, "growth_exponent": round(exponent, 2)}
    results["estimate"] = estimate(results)
    common.finish(results, args.out)


if __name__ == "__main__":
    main()
