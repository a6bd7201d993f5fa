"""Every pair of near-duplicate feature vectors (cosine at or above a threshold), searched incrementally.

The search is exact: blocked float32 matrix products of L2-normalised vectors, one
tile of rows against one tile of columns at a time, keeping only the entries at or
above a floor cosine. Extra memory is a few tiles (under 100 MB at the default
block) whatever the number of vectors, so 100k x 1024 features need no normalised
copy of the whole matrix.

What was searched is remembered in a store file beside the bottleneck cache: the
digests searched together, a fingerprint of each one's vector, and every pair among
them at or above the store's floor. A rerun computes only new x (old + new)
products, and any threshold at or above the floor is answered from the store.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.atomic_write import write_atomically

# Chosen by measurement with MobileNet v1 on real photos and their near-copies
# (docs/benchmarks.md, "Near-duplicate threshold"): at 0.90, 98-100% of re-encoded,
# cropped and brightened copies join their photo, while 1.6% (superheroes) and 3.8%
# (flowers) of photos join another photo, often a burst shot of the same scene.
DEFAULT_THRESHOLD = 0.90
# Pairs are searched and stored down to min(threshold, FLOOR), so that moving the
# threshold anywhere above FLOOR later is answered from the store with no search.
# At 0.85 an ordinary set stores about ten times the pairs it has at 0.90 (flowers:
# 812 for 2,934 photos), still tiny; PARTNERS bounds the rest.
FLOOR = 0.85
# Rows and columns per tile: the whole search at 100k x 1024 took the same CPU time
# with 2048 and 4096 (bench/near_duplicates.py), and 2048 needs a third of the
# memory: two 16 MB products with their 4 MB masks, two 8 MB input tiles.
BLOCK = 2048
# Each photo keeps at most this many partners (its most similar ones; a pair stays
# when it is among the best of either photo). Ordinary sets never reach it; a set of
# near-identical shots would otherwise make pairs grow as N^2 (sign-digits has 147k
# pairs >= 0.90 among 1,635 photos: at 100k such photos, half a billion).
PARTNERS = 32
STORE_NAME = "neighbours.npz"

_FORMAT = "tensorguess-neighbours"
_VERSION = 1
_KEYS = {"format", "version", "dim", "floor", "partners", "digests", "fingerprints", "pairs", "cosines"}
# A vector is recognised by its projection on a few fixed random directions: that
# catches a store written for other features (another module, or changed vectors
# under the same digests) at the cost of one thin product, while the float noise of
# recomputing the same bottleneck (about 1e-6) stays far below the tolerance.
_FINGERPRINT_DIMS = 4
_FINGERPRINT_TOLERANCE = 1e-3
# Cosines of one pair computed in two different tiles differ by float rounding only.
_ROUNDING = 1e-5


def find_pairs(
    digests: Sequence[str],
    vectors: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    store: Path | None = None,
    *,
    floor: float | None = None,
    block: int = BLOCK,
    partners: int | None = PARTNERS,
    warn: Callable[[str], None] | None = None,
) -> list[tuple[int, int, float]]:
    """Index pairs (i, j, cosine), i < j, of the vectors whose cosine is at least `threshold`.

    `vectors[k]` is the feature vector of the photo whose content digest is
    `digests[k]`. A digest given more than once is searched once, by its first
    index: its other indices appear in no pair, since the caller joins exact
    duplicates by digest. A zero vector joins nothing.

    `store` (e.g. `<bottleneck cache>/neighbours.npz`) remembers the search: only
    digests it has not seen are searched against the rest; then, if any was new, it
    is rewritten (atomically) to hold exactly the digests given now, so a digest that
    left and comes back is searched again. A damaged or foreign store is ignored and
    rebuilt; one that cannot be written costs nothing but the saving (`warn` is told
    why). `floor` is the lowest cosine searched and stored,
    min(threshold, FLOOR) by default; `block` is the tile side.

    `partners` caps the pairs of each photo: a pair is kept when it is among the
    `partners` most similar of either of its photos (None: no cap). That bounds the
    pairs by N x partners; groups of near-identical shots stay joined. A photo with
    more partners than that may, after others were removed, miss a pair that a
    search from scratch would keep: only inside such a dense group.

    Pairs come sorted by (i, j).
    """
    threshold = float(threshold)
    if not 0.0 < threshold <= 1.0:  # NaN fails here too
        raise ValueError(f"threshold must be a cosine in (0, 1], not {threshold!r}")
    wanted_floor = min(threshold, FLOOR) if floor is None else float(floor)
    if not 0.0 < wanted_floor <= threshold:
        raise ValueError(f"floor must be in (0, threshold], not {floor!r}")
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(digests):
        raise ValueError(f"vectors must be [{len(digests)}, D], not {list(vectors.shape)}")
    if block < 1:
        raise ValueError(f"block must be at least 1, not {block}")
    if partners is not None and partners < 1:
        raise ValueError(f"partners must be at least 1 or None, not {partners}")

    first: dict[str, int] = {}
    for index, digest in enumerate(digests):
        first.setdefault(digest, index)
    unique = list(first)
    rows = np.fromiter(first.values(), dtype=np.int64, count=len(first))
    inverse_norms, fingerprints = _prepare(vectors, rows, block)

    previous = _load(store, vectors.shape[1]) if store is not None else None
    if previous is not None and (previous.floor > threshold + _ROUNDING
                                 or previous.partners != (partners or 0)):
        previous = None  # the store lacks pairs asked for now (below its floor, or capped): search again
    old_mask = np.zeros(len(unique), dtype=bool)
    kept = _Pairs.empty()
    new_floor = wanted_floor
    if previous is not None:
        new_floor = max(wanted_floor, previous.floor)
        where = {digest: k for k, digest in enumerate(previous.digests)}
        stored_at = np.array([where.get(digest, -1) for digest in unique], dtype=np.int64)
        known = stored_at >= 0
        old_mask[known] = np.all(
            np.abs(previous.fingerprints[stored_at[known]] - fingerprints[known])
            <= _FINGERPRINT_TOLERANCE, axis=1)
        # Stored pairs between two digests that are here now, in positions of `unique`.
        position = np.full(len(previous.digests), -1, dtype=np.int64)
        position[stored_at[old_mask]] = np.flatnonzero(old_mask)
        a, b = position[previous.pairs[:, 0]], position[previous.pairs[:, 1]]
        keep = (a >= 0) & (b >= 0)
        if new_floor > previous.floor:  # the store's floor rises to the one asked for now
            keep &= previous.cosines >= new_floor
        kept = _Pairs(a[keep], b[keep], previous.cosines[keep])

    new = np.flatnonzero(~old_mask)
    if len(new) == 0:
        found = kept
    else:
        old = np.flatnonzero(old_mask)
        collected = _Collector(unique, partners)
        collected.add(kept)
        _search(vectors, rows, inverse_norms, new, old, new_floor, block, collected, triangle=False)
        _search(vectors, rows, inverse_norms, new, new, new_floor, block, collected, triangle=True)
        found = collected.result()
        if store is not None:
            _save(store, _Store(vectors.shape[1], new_floor, partners or 0, unique, fingerprints,
                                found.as_array(), found.cosines), warn)

    chosen = found.cosines >= threshold
    i, j = rows[found.a[chosen]], rows[found.b[chosen]]
    low, high = np.minimum(i, j), np.maximum(i, j)
    cosines = np.minimum(found.cosines[chosen], 1.0)
    order = np.lexsort((high, low))
    return list(zip(low[order].tolist(), high[order].tolist(), cosines[order].tolist(), strict=True))


@dataclass
class _Pairs:
    """Pairs as positions into the distinct digests, and their cosines."""

    a: np.ndarray
    b: np.ndarray
    cosines: np.ndarray

    @staticmethod
    def empty() -> _Pairs:
        return _Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))

    @staticmethod
    def concatenate(parts: list[_Pairs]) -> _Pairs:
        return _Pairs(np.concatenate([p.a for p in parts]).astype(np.int64),
                      np.concatenate([p.b for p in parts]).astype(np.int64),
                      np.concatenate([p.cosines for p in parts]).astype(np.float32))

    def as_array(self) -> np.ndarray:
        return np.stack([np.minimum(self.a, self.b), np.maximum(self.a, self.b)], axis=1)


def _chunks(count: int, size: int):  # (start, end) of each block
    for start in range(0, count, size):
        yield start, min(start + size, count)


def _prepare(vectors: np.ndarray, rows: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """(1 / |v| of each distinct vector, 0 for a zero vector; its fingerprint), in one pass."""
    directions = np.random.default_rng(20261121).standard_normal(
        (vectors.shape[1], _FINGERPRINT_DIMS)).astype(np.float32)
    inverse = np.zeros(len(rows), dtype=np.float32)
    fingerprints = np.zeros((len(rows), _FINGERPRINT_DIMS), dtype=np.float32)
    for start in range(0, len(rows), block):
        tile = np.asarray(vectors[rows[start:start + block]], dtype=np.float32)
        norms = np.linalg.norm(tile, axis=1)
        if not np.all(np.isfinite(norms)):
            raise ValueError("vectors must be finite numbers")
        inverse[start:start + block] = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        fingerprints[start:start + block] = (tile @ directions) * inverse[start:start + block, None]
    return inverse, fingerprints


def _normalised(vectors: np.ndarray, rows: np.ndarray, inverse_norms: np.ndarray,
                positions: np.ndarray) -> np.ndarray:
    tile = np.asarray(vectors[rows[positions]], dtype=np.float32)
    tile *= inverse_norms[positions, None]
    return tile


def _search(vectors: np.ndarray, rows: np.ndarray, inverse_norms: np.ndarray, left: np.ndarray,
            right: np.ndarray, floor: float, block: int, into: _Collector, triangle: bool) -> None:
    """Pairs (left[x], right[y]) with cosine >= floor; with `triangle` (left is right), x < y only."""
    if len(left) == 0 or len(right) == 0:
        return
    shape = (min(block, len(left)), min(block, len(right)))
    # Two tiles in turn, reused (no page faults per tile): a worker thread picks the entries
    # >= floor out of one while this thread multiplies the next. OpenBLAS spreads the product
    # over every core, the picking runs on one; in turn they would leave the others idle.
    buffers = [(np.empty(shape, dtype=np.float32), np.empty(shape, dtype=bool)) for _ in range(2)]
    turn = 0
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=1) as picker:
        for r0, r1 in _chunks(len(left), block):
            row_tile = _normalised(vectors, rows, inverse_norms, left[r0:r1])
            for c0, c1 in _chunks(len(right), block):
                if triangle and c1 <= r0:
                    continue  # below the diagonal: its mirror tile was searched
                if len(pending) == 2:  # the older one is done with the buffers used next
                    into.add(pending.popleft().result())
                product, hits = buffers[turn]
                turn = 1 - turn
                column_tile = _normalised(vectors, rows, inverse_norms, right[c0:c1])
                out = product[:r1 - r0, :c1 - c0]
                if out.flags.c_contiguous:
                    np.matmul(row_tile, column_tile.T, out=out)
                else:  # an edge tile narrower than the buffer
                    out = row_tile @ column_tile.T
                pending.append(picker.submit(_pick, out, hits[:r1 - r0, :c1 - c0], floor, left[r0:r1],
                                             right[c0:c1], triangle and c0 == r0))
        while pending:
            into.add(pending.popleft().result())


def _pick(product: np.ndarray, hits: np.ndarray, floor: float, left: np.ndarray, right: np.ndarray,
          diagonal: bool) -> _Pairs:
    """The entries of one tile's product at or above the floor, as pairs."""
    x, y = np.nonzero(np.greater_equal(product, floor, out=hits))
    if diagonal:  # a tile on the diagonal: each pair once, no photo with itself
        upper = y > x
        x, y = x[upper], y[upper]
    return _Pairs(left[x], right[y], product[x, y])


class _Collector:
    """The pairs found so far; with a cap on partners, pruned whenever they grow past N x cap.

    Pruning early is safe: a pair outside both of its photos' best `partners` among
    the pairs seen so far stays outside them when more pairs come.
    """

    def __init__(self, digests: list[str], partners: int | None):
        self.parts: list[_Pairs] = []
        self.size = 0
        self.partners = partners
        self.budget = max(1 << 20, len(digests) * (partners or 0))
        self.tie: np.ndarray | None = None
        if partners is not None:
            # Equal cosines are ranked by digest, so that any order of the photos gives one answer.
            self.tie = np.argsort(np.argsort(np.array(digests)))

    def add(self, pairs: _Pairs) -> None:
        if len(pairs.a) == 0:
            return
        self.parts.append(pairs)
        self.size += len(pairs.a)
        if self.partners is not None and self.size > self.budget:
            self._prune()
            self.budget = max(self.budget, 2 * self.size)

    def result(self) -> _Pairs:
        if self.partners is not None:
            self._prune()
        return _Pairs.concatenate(self.parts) if self.parts else _Pairs.empty()

    def _prune(self) -> None:
        pairs = _Pairs.concatenate(self.parts) if self.parts else _Pairs.empty()
        ends = np.concatenate([pairs.a, pairs.b])
        if len(ends) and np.bincount(ends).max() > self.partners:
            # Every pair once from each of its photos; rank the pairs of each photo, best first.
            other = np.concatenate([pairs.b, pairs.a])
            cosines = np.concatenate([pairs.cosines, pairs.cosines])
            order = np.lexsort((self.tie[other], -cosines, ends))
            sorted_ends = ends[order]
            starts = np.flatnonzero(np.r_[True, sorted_ends[1:] != sorted_ends[:-1]])
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            keep = np.zeros(len(pairs.a), dtype=bool)
            keep[order[rank < self.partners] % len(pairs.a)] = True
            pairs = _Pairs(pairs.a[keep], pairs.b[keep], pairs.cosines[keep])
        self.parts = [pairs]
        self.size = len(pairs.a)


@dataclass
class _Store:
    dim: int  # D of the vectors searched
    floor: float
    partners: int  # the cap on partners it was pruned with, 0 for none
    digests: list[str]
    fingerprints: np.ndarray  # [M, _FINGERPRINT_DIMS] float32
    pairs: np.ndarray  # [P, 2] int, positions into digests, a < b
    cosines: np.ndarray  # [P] float32


def _load(path: Path, dim: int) -> _Store | None:
    """The store at `path`, or None when it is missing, damaged, foreign or for other features."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile) or set(data.files) != _KEYS:
                return None
            arrays = {key: data[key] for key in _KEYS}
    except Exception:  # noqa: BLE001 - whatever fails to read is a damaged cache file: rebuild it
        return None
    try:
        return _validated(arrays, dim)
    except (ValueError, TypeError, IndexError, UnicodeDecodeError):
        return None


def _validated(arrays: dict[str, np.ndarray], dim: int) -> _Store | None:
    """Check every shape, type and range before anything in the file is believed."""
    if arrays["format"].shape != () or str(arrays["format"]) != _FORMAT:
        return None
    if arrays["version"].shape != () or int(arrays["version"]) != _VERSION:
        return None
    if arrays["dim"].shape != () or int(arrays["dim"]) != dim:
        return None
    floor = arrays["floor"]
    if floor.shape != () or floor.dtype.kind != "f" or not 0.0 < float(floor) <= 1.0:
        return None
    if arrays["partners"].shape != () or arrays["partners"].dtype.kind != "i" or arrays["partners"] < 0:
        return None
    digests, fingerprints = arrays["digests"], arrays["fingerprints"]
    pairs, cosines = arrays["pairs"], arrays["cosines"]
    count = len(digests)
    if digests.ndim != 1 or digests.dtype.kind != "S":
        return None
    if fingerprints.dtype != np.float32 or fingerprints.shape != (count, _FINGERPRINT_DIMS):
        return None
    if pairs.dtype.kind != "i" or pairs.ndim != 2 or pairs.shape[1] != 2:
        return None
    if cosines.dtype != np.float32 or cosines.shape != (len(pairs),):
        return None
    if not (np.all(np.isfinite(fingerprints)) and np.all(np.isfinite(cosines))):
        return None
    if len(pairs) and not (np.all(pairs[:, 0] >= 0) and np.all(pairs[:, 0] < pairs[:, 1])
                           and np.all(pairs[:, 1] < count)):
        return None
    if len(cosines) and (cosines.min() < float(floor) - _ROUNDING or cosines.max() > 1.0 + 1e-3):
        return None
    names = [digest.decode() for digest in digests.tolist()]
    if len(set(names)) != count:
        return None
    keys = pairs[:, 0].astype(np.int64) * count + pairs[:, 1]
    if len(np.unique(keys)) != len(keys):
        return None
    return _Store(dim, float(floor), int(arrays["partners"]), names, fingerprints, pairs.astype(np.int64),
                  cosines)


def _save(path: Path, store: _Store, warn: Callable[[str], None] | None) -> None:
    """Write the store atomically; a location that cannot take it only loses the saving."""
    buffer = io.BytesIO()
    count = len(store.digests)
    np.savez(
        buffer,
        format=np.array(_FORMAT),
        version=np.array(_VERSION, dtype=np.int64),
        dim=np.array(store.dim, dtype=np.int64),
        floor=np.array(store.floor, dtype=np.float64),
        partners=np.array(store.partners, dtype=np.int64),
        digests=np.array([d.encode() for d in store.digests], dtype="S") if count else np.zeros(0, "S1"),
        fingerprints=store.fingerprints.astype(np.float32),
        pairs=store.pairs.astype(np.int32 if count < 2**31 else np.int64),
        cosines=store.cosines.astype(np.float32),
    )
    try:
        write_atomically(Path(path), buffer.getvalue())
    except OSError as error:
        if warn is not None:
            warn(f"tensor-guess: cannot store the near-duplicate search in {path} "
                 f"({error.strerror or error}): it is searched again next time")
