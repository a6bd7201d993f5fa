"""The near-duplicate search at 20k and 100k photos: ours against brute force and faiss, time and memory.

    python bench/near_duplicates.py [--out bench/results/near_duplicates.json] [--sizes 20000 100000]
        [--rounds 2] [--cache DIR] [--ways ours rows faiss_flat faiss_ivf faiss_hnsw]

faiss is optional: put it on the path (e.g. `pip install --target /tmp/faisslib faiss-cpu`, then
PYTHONPATH=/tmp/faisslib) to time its ways; without it they are left out.

Vectors shaped like real bottlenecks: the MobileNet v1 features of every photo in ../shared
(4,952) give a mean and a covariance; N vectors are drawn from that Gaussian and clipped to
ReLU6's [0, 6], and 2% of them are replaced by near-copies of others (each feature scaled by
1 +- 10%, cosine about 0.99). Every way finds all pairs at cosine >= 0.90 (the store's floor):
  ours        near_duplicates.find_pairs(..., store=None, partners=None): float32 tiles of
              BLOCK x BLOCK normalised on the fly, upper triangle only (no cap on partners, so
              that its pairs can be checked against the exact ways').
  rows        the baseline, brute force as one writes it: a normalised copy of all vectors,
              then 1024 rows at a time against all N (the full square), entries >= floor kept.
  faiss_flat  faiss.IndexFlatIP(D) of the normalised vectors, range_search of all of them
              (exact; faiss's own blocked BLAS products over the full square).
  faiss_ivf   faiss.IndexIVFFlat (4 sqrt(N) lists, nprobe 16), range_search: approximate.
  faiss_hnsw  faiss.IndexHNSWFlat (M 32), 33 nearest of each, those >= floor: approximate.
The approximate ways report their recall of the exact pairs. Each way's peak memory is the
peak resident set above the one before it (Linux's VmHWM, reset through /proc/self/clear_refs)
or tracemalloc's peak, whichever is larger.
At the largest size, ours also runs as the split will run it (a store, the default cap on
partners): the first search, then 1% new photos (the incremental rerun), then another
threshold (answered from the store). Then ours at other tile sides (--blocks), at the largest size.
"""

from __future__ import annotations

import re
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

import common

FLOOR = 0.90
ROWS = 1024
FLOWERS = common.SHARED / "datasets" / "flowers"


def memory_mb() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", status).group(1)) / 1024 for key in ("VmRSS", "VmHWM")}


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def with_memory(function):
    """(wall s, CPU s, peak MB, result) of one call.

    The peak is the larger of two: the resident set's peak above the one before (which
    misses memory that malloc reuses after an earlier way freed it, and sees faiss's own
    allocations) and tracemalloc's peak (which sees every NumPy array, reused or not).
    """
    reset_peak()
    before = memory_mb()["VmRSS"]
    tracemalloc.start()
    try:
        wall, cpu, result = common.measured(function)
        traced = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    return wall, cpu, max(memory_mb()["VmHWM"] - before, traced), result


def real_bottlenecks(cache_dir: Path | None) -> np.ndarray:
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import BottleneckCache, extract

    folders = [p for root in (common.SUPERHEROES, common.SIGN_DIGITS, FLOWERS)
               for p in sorted(root.iterdir()) if p.is_dir()]
    paths = common.image_files(*folders)
    spec, loaded = modules.resolve(str(common.MODULE))
    with tempfile.TemporaryDirectory() as scratch:
        cache = BottleneckCache(cache_dir or Path(scratch), spec)
        result = extract(paths, spec, loaded, cache)
    return result.matrix([p for p in paths if result.readable(p)])


def synthetic(real: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` vectors with the mean and covariance of `real`, clipped as ReLU6 clips; 2% near-copies."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    values, axes = np.linalg.eigh(np.cov(real, rowvar=False))
    scale = (axes * np.sqrt(np.clip(values, 0, None))).astype(np.float32)
    out = np.empty((count, real.shape[1]), dtype=np.float32)
    for start in range(0, count, 8192):
        end = min(start + 8192, count)
        out[start:end] = rng.standard_normal((end - start, real.shape[1]), dtype=np.float32) @ scale.T + mean
    np.clip(out, 0, 6, out=out)
    copies = rng.choice(count, size=count // 50, replace=False)
    sources = rng.integers(0, count, size=len(copies))
    out[copies] = out[sources] * rng.uniform(0.9, 1.1, size=(len(copies), real.shape[1])).astype(np.float32)
    return out


def ours(digests, vectors, store=None, threshold=FLOOR, partners=None):
    """find_pairs at the floor; with no cap on partners by default, to be compared pair for pair."""
    from tensorguess.features.near_duplicates import find_pairs

    return find_pairs(digests, vectors, threshold, store, floor=FLOOR, partners=partners)


def as_keys(pairs, count: int) -> np.ndarray:
    return np.unique(np.array([i * count + j for i, j, *_ in pairs], dtype=np.int64))


def rows(vectors: np.ndarray) -> np.ndarray:
    """Brute force: normalise a copy, then ROWS rows at a time against all, the full square."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    found = []
    for start in range(0, len(unit), ROWS):
        similar = unit[start:start + ROWS] @ unit.T
        i, j = np.nonzero(similar >= FLOOR)
        i += start
        found.append(i[j > i] * len(unit) + j[j > i])
    return np.unique(np.concatenate(found))


def faiss_flat(faiss, vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    return _range_keys(index, unit)


def faiss_ivf(faiss, vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    lists = int(4 * np.sqrt(len(unit)))
    quantizer = faiss.IndexFlatIP(unit.shape[1])
    index = faiss.IndexIVFFlat(quantizer, unit.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.train(unit[np.random.default_rng(0).choice(len(unit), min(len(unit), 40 * lists), replace=False)])
    index.add(unit)
    index.nprobe = 16
    return _range_keys(index, unit)


def faiss_hnsw(faiss, vectors: np.ndarray) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexHNSWFlat(unit.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.add(unit)
    similar, neighbours = index.search(unit, 33)
    i = np.repeat(np.arange(len(unit)), neighbours.shape[1])
    j, s = neighbours.ravel(), similar.ravel()
    low, high = np.minimum(i, j), np.maximum(i, j)
    keep = (j >= 0) & (j != i) & (s >= FLOOR)
    return np.unique(low[keep] * len(unit) + high[keep])


def _range_keys(index, unit: np.ndarray) -> np.ndarray:
    limits, _, neighbours = index.range_search(unit, FLOOR)
    i = np.repeat(np.arange(len(unit)), np.diff(limits.astype(np.int64)))
    keep = neighbours > i
    return np.unique(i[keep] * len(unit) + neighbours[keep])


def measure_size(count: int, real: np.ndarray, ways: list[str], rounds: int, faiss, work: Path,
                 incremental: bool) -> dict:
    vectors = synthetic(real, count, seed=count)
    digests = [f"{k:040x}" for k in range(count)]
    functions = {
        "ours": lambda: as_keys(ours(digests, vectors), count),
        "rows": lambda: rows(vectors),
        "faiss_flat": lambda: faiss_flat(faiss, vectors),
        "faiss_ivf": lambda: faiss_ivf(faiss, vectors),
        "faiss_hnsw": lambda: faiss_hnsw(faiss, vectors),
    }
    chosen = [w for w in ways if w in functions and (faiss is not None or not w.startswith("faiss"))]
    result: dict = {"photos": count, "dims": vectors.shape[1], "vectors_mb": round(vectors.nbytes / 2**20),
                    "ways": {}}
    keys: dict[str, np.ndarray] = {}
    for round_ in range(rounds):
        for way in chosen:
            if way.startswith("faiss_") and way != "faiss_flat" and round_ > 0:
                continue  # approximate ways: one round tells their speed and recall
            wall, cpu, peak, keys[way] = with_memory(functions[way])
            entry = result["ways"].setdefault(way, {"seconds": [], "cpu_seconds": [], "peak_mb": []})
            entry["seconds"].append(round(wall, 2))
            entry["cpu_seconds"].append(round(cpu, 2))
            entry["peak_mb"].append(round(peak))
            print(f"{count}: {way} {wall:.2f} s (CPU {cpu:.2f}), peak +{peak:.0f} MB, {len(keys[way])} pairs",
                  flush=True)
    exact = keys.get("ours")
    for way, entry in result["ways"].items():
        entry["best_seconds"] = min(entry["seconds"])
        entry["pairs"] = int(len(keys[way]))
        if exact is not None:
            entry["recall"] = round(float(np.isin(exact, keys[way]).mean()) if len(exact) else 1.0, 4)
            entry["extra_pairs"] = int(np.sum(~np.isin(keys[way], exact)))
    if "ours" in result["ways"]:
        best = result["ways"]["ours"]["best_seconds"]
        result["speedup_of_ours"] = {way: round(entry["best_seconds"] / best, 2)
                               for way, entry in result["ways"].items() if way != "ours"}
    if incremental:
        result["store"] = measure_store(vectors, digests, real, work)
    return result


def measure_store(vectors: np.ndarray, digests: list[str], real: np.ndarray, work: Path) -> dict:
    """ours with a store: the first search, 1% new photos, another threshold."""
    from tensorguess.features.near_duplicates import PARTNERS

    store = work / "neighbours.npz"
    count = len(digests)
    wall, cpu, peak, pairs = with_memory(lambda: ours(digests, vectors, store, partners=PARTNERS))
    out = {"partners": PARTNERS,
           "first": {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_mb": round(peak),
                     "store_mb": round(store.stat().st_size / 2**20, 1), "pairs_capped": len(pairs)}}
    more = np.concatenate([vectors, synthetic(real, count // 100, seed=count + 1)])
    more_digests = digests + [f"{k:040x}" for k in range(count, len(more))]
    wall, cpu, peak, _ = with_memory(lambda: ours(more_digests, more, store, partners=PARTNERS))
    out["one_percent_new"] = {"photos": len(more), "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
                              "peak_mb": round(peak),
                              "first_over_this": round(out["first"]["seconds"] / wall, 1)}
    wall, cpu, peak, _ = with_memory(
        lambda: ours(more_digests, more, store, threshold=0.95, partners=PARTNERS))
    out["other_threshold"] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_mb": round(peak)}
    started = time.perf_counter()
    from tensorguess.features import near_duplicates

    near_duplicates._load(store, more.shape[1])
    out["store_load_seconds"] = round(time.perf_counter() - started, 3)
    return out


def main() -> None:
    parse = common.parser(__doc__.splitlines()[0])
    parse.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parse.add_argument("--rounds", type=int, default=2, help="rounds at each size but the largest (1)")
    parse.add_argument("--cache", type=Path, help="a bottleneck cache to reuse between runs")
    parse.add_argument("--ways", nargs="+", default=["ours", "rows", "faiss_flat", "faiss_ivf", "faiss_hnsw"])
    parse.add_argument("--blocks", type=int, nargs="*", default=[1024, 4096],
                       help="tile sides of ours to compare at the largest size")
    args = parse.parse_args()
    common.quiet_tensorflow()
    try:
        import faiss
    except ImportError:
        faiss = None

    results: dict = {"machine": common.machine(), "floor": FLOOR,
                     "faiss": getattr(faiss, "__version__", None), "peak_reset": reset_peak(), "sizes": {}}
    real = real_bottlenecks(args.cache)
    results["real_vectors"] = int(len(real))
    with tempfile.TemporaryDirectory() as scratch:
        largest = max(args.sizes)
        for count in sorted(args.sizes):
            results["sizes"][str(count)] = measure_size(
                count, real, args.ways, 1 if count == largest else args.rounds, faiss, Path(scratch),
                incremental=count == largest)
        if args.blocks:
            results["blocks"] = measure_blocks(real, max(args.sizes), args.blocks)
    common.finish(results, args.out)


def measure_blocks(real: np.ndarray, count: int, blocks: list[int]) -> dict:
    from tensorguess.features.near_duplicates import find_pairs

    vectors = synthetic(real, count, seed=count)
    digests = [f"{k:040x}" for k in range(count)]
    out = {}
    for block in blocks:
        wall, cpu, peak, _ = with_memory(
            lambda b=block: find_pairs(digests, vectors, FLOOR, block=b, partners=None))
        out[str(block)] = {"seconds": round(wall, 2), "cpu_seconds": round(cpu, 2), "peak_mb": round(peak)}
        print(f"block {block}: {wall:.2f} s, peak +{peak:.0f} MB", flush=True)
    return out


if __name__ == "__main__":
    main()
