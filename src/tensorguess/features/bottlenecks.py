"""Bottleneck features: one batched, pipelined pass over the images, and their cache.

The cache is a folder named after the module's identity (a changed module gets a
fresh one) holding one feature store (store.py): vectors keyed by each image's
content hash, so renaming or moving photos costs nothing, and the stat index, so
an unchanged photo is not even read again. A cache of one `.npy` file per image,
as earlier versions wrote, is imported into the store once and then left alone.
"""

from __future__ import annotations

import os
import re
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tensorguess import strict_json
from tensorguess.atomic_write import write_atomically
from tensorguess.data.images import Skipped, UnreadableImage, content_hash
from tensorguess.features.modules import ModuleSpec, feature_function, to_value_range
from tensorguess.features.pipeline import bounded_map, decoded_batches, default_workers, progress
from tensorguess.features.shared_matrix import aligned_empty, gather_rows
from tensorguess.features.store import FeatureStore, stat_key

OLD_FORMAT_IMPORTED = "npy_files_imported"

# Features of the paths given, in batches as they come: (path, vector [D] or why unreadable).
Compute = Callable[[list[Path]], Iterator[list[tuple[Path, "np.ndarray | UnreadableImage"]]]]


class BottleneckCache:
    """Feature vectors of one module: its folder's feature store, and the stat index."""

    def __init__(self, root: Path, spec: ModuleSpec,
                 warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
        self.dir = Path(root) / spec.cache_name
        self.warn = warn
        self.warned = False
        self.store = FeatureStore(self.dir)
        about = self.dir / "module.json"
        if self.store.unwritable is None and not about.exists():
            write_atomically(about, strict_json.dumps(spec.describe(), indent=1).encode())
        if self.store.unwritable is None and self.store.meta(OLD_FORMAT_IMPORTED) is None:
            self._import_npy_files()

    @property
    def unwritable(self) -> str | None:
        """Why entries cannot be stored (a read-only cache, a full disk), once that is known."""
        return self.store.unwritable

    def _import_npy_files(self) -> None:
        """Bring an earlier version's one-file-per-image cache into the store, once."""
        found = []
        for path in self.dir.glob("??/*.npy"):
            try:
                vector = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError):
                continue  # damaged: recomputed when needed
            if vector.ndim == 1 and vector.dtype == np.float32 and np.all(np.isfinite(vector)):
                found.append((path.stem, vector))
        self.store.put_vectors(found)
        self.store.set_meta(OLD_FORMAT_IMPORTED, str(len(found)))

    def put_many(self, items: list[tuple[str, np.ndarray]]) -> None:
        """Store entries; if the cache cannot take them, say so once and go on without storing."""
        self.store.put_vectors(items)
        if self.store.unwritable is not None and not self.warned:
            self.warn(f"tensor-guess: cannot store bottlenecks in {self.dir} ({self.unwritable}): "
                      "the missing ones are computed for this run only; give a writable "
                      "--bottleneck_dir to keep them")
            self.warned = True


@dataclass
class Extraction:
    """What one pass produced: one matrix of features, a row per distinct readable content.

    Photos with the same content share their row, and nothing else holds a vector:
    memory grows with the feature matrix, never with the photos.
    """

    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [rows, D]
    rows: dict[str, int] = field(default_factory=dict)  # content hash -> its row in `features`
    digests: dict[Path, str] = field(default_factory=dict)  # content hash of every hashed path
    skipped: list[Skipped] = field(default_factory=list)
    computed: int = 0
    from_cache: int = 0
    seconds: float = 0.0

    def readable(self, path: Path) -> bool:
        """Whether `path` has features (it could be read, hashed and decoded)."""
        return self.digests.get(path) in self.rows

    def row_of(self, paths: list[Path]) -> np.ndarray:
        """The row of `features` of each readable path."""
        return np.fromiter((self.rows[self.digests[path]] for path in paths), np.int64, len(paths))

    def vector(self, path: Path) -> np.ndarray:
        """The features of one readable path (a view into the matrix)."""
        return self.features[self.rows[self.digests[path]]]

    def matrix(self, paths: list[Path]) -> np.ndarray:
        """[len(paths), D] float32: the features of each readable path (a copy, aligned so
        that the head's training reads it in place)."""
        return gather_rows(self.features, self.row_of(paths))

    def summary(self) -> str:
        rate = f" ({self.computed / self.seconds:.1f} images/s)" if self.computed and self.seconds else ""
        text = f"Bottlenecks: {self.computed} computed{rate}, {self.from_cache} read from cache"
        if self.skipped:
            text += f", {len(self.skipped)} unreadable file(s) skipped"
        return text


# Traced functions per loaded module, so that extracting again (another folder, a second
# pass in one process) does not trace again; gone with the module.
_compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compile_features(spec: ModuleSpec, loaded) -> Callable:
    """A tf.function mapping float images in [0,1] [N,S,S,3] to features [N,D]."""
    per_spec = _compiled.setdefault(loaded, {})
    if spec.identity not in per_spec:
        per_spec[spec.identity] = _trace_features(spec, loaded)
    return per_spec[spec.identity]


def feature_width(spec: ModuleSpec, loaded) -> int:
    """The length of the module's feature vector, from one run on a black image."""
    size = spec.input_size
    return int(compile_features(spec, loaded)(np.zeros([1, size, size, 3], np.float32)).shape[-1])


def classification_warning(spec: ModuleSpec, loaded) -> str | None:
    """A warning when the module gives class scores (ImageNet's 1000 or 1001 logits), not features.

    Such a module still trains a classifier, but on what ImageNet's last layer kept
    of each photo: its feature_vector sibling is what transfer learning wants.
    """
    width = feature_width(spec, loaded)
    named = "classification" in re.split(r"[/\\]", spec.handle)
    if width not in (1000, 1001) and not named:
        return None
    return (f"tensor-guess: {spec.handle} looks like a classification module ({width} outputs: "
            "class scores, not features); training on them works but loses most of what a "
            "feature_vector module gives; use the module's feature_vector version")


def _trace_features(spec: ModuleSpec, loaded) -> Callable:
    import tensorflow as tf

    features = feature_function(loaded)
    size = spec.input_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def run(images):
        return features(to_value_range(images, spec.value_range))

    return run


def extract(
    paths: list[Path],
    spec: ModuleSpec,
    loaded,
    cache: BottleneckCache | None,
    batch_size: int = 32,
    workers: int | None = None,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    compute: Compute | None = None,
) -> Extraction:
    """Features for every readable path, computing only those not in the cache.

    `compute` computes the missing ones elsewhere (engine/ray_engine.py: on a cluster),
    given one path of each missing content; the store is still written here only.
    """
    workers = workers or default_workers()
    result = Extraction()
    by_digest: dict[str, list[Path]] = {}
    for path, digest in zip(paths, _digests(paths, cache, workers), strict=True):
        if isinstance(digest, UnreadableImage):
            _skip(result, path, str(digest), warn)
            continue
        by_digest.setdefault(digest, []).append(path)
        result.digests[path] = digest

    # One matrix for every distinct content, filled from the store, then by the module.
    order = list(by_digest)
    features = aligned_empty((len(order), feature_width(spec, loaded)))  # the head reads it in place
    good = cache.store.read_into(order, features) if cache else np.zeros(len(order), bool)
    result.from_cache = sum(len(by_digest[order[k]]) for k in np.flatnonzero(good))
    missing = np.flatnonzero(~good).tolist()
    if missing:
        started = time.perf_counter()
        row_of_path = {by_digest[order[k]][0]: k for k in missing}
        batches = (compute(list(row_of_path)) if compute is not None
                   else local_batches(list(row_of_path), spec, loaded, batch_size, workers))
        with progress(len(missing), "Bottlenecks") as bar:
            for entries in batches:
                new = []
                for path, vector in entries:
                    k = row_of_path[path]
                    if isinstance(vector, UnreadableImage):
                        for same in by_digest[order[k]]:
                            _skip(result, same, str(vector), warn)
                        continue
                    features[k] = vector
                    good[k] = True
                    new.append((order[k], features[k]))
                    result.computed += 1
                if cache:
                    cache.put_many(new)  # one transaction a batch: a kill loses at most this batch
                bar.update(len(entries))
        result.seconds = time.perf_counter() - started
    kept = np.flatnonzero(good)
    for target, k in enumerate(kept.tolist()):  # close the rows of undecodable photos, in place
        if target != k:
            features[target] = features[k]
    result.features = features[:len(kept)]
    result.rows = {order[k]: target for target, k in enumerate(kept.tolist())}
    return result


def local_batches(paths: list[Path], spec: ModuleSpec, loaded, batch_size: int, workers: int
                  ) -> Iterator[list[tuple[Path, np.ndarray | UnreadableImage]]]:
    """The module in this process over batches decoded on worker threads ahead of it, each
    batch's entries in the order of `paths` (engine/actors.py runs the same on Ray's workers)."""
    run = compile_features(spec, loaded)
    for batch in decoded_batches(paths, spec.input_size, batch_size, workers):
        vectors = iter(run(batch.pixels).numpy() if batch.pixels is not None else [])
        yield [(path, error if error else next(vectors)) for path, error in batch.entries]


@dataclass
class Variants:
    """Distorted variants' features: `count` rows per training content, from `first_row[digest]`."""

    features: np.ndarray
    first_row: dict[str, int]
    count: int
    recipe: str  # the recipe's identity
    computed: int = 0
    from_cache: int = 0
    seconds: float = 0.0
    lost: list[Skipped] = field(default_factory=list)  # photos unreadable now (changed since)

    def rows(self, digests: list[str]) -> np.ndarray:
        """The rows of every variant of each content (a content lost now has none)."""
        found = [self.first_row[d] + np.arange(self.count) for d in digests if d in self.first_row]
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    def summary(self, photos: int) -> str:
        rate = f" ({self.computed / self.seconds:.1f} images/s)" if self.computed and self.seconds else ""
        return (f"Augmentation: {self.count} variant(s) of each of {photos} training photos: "
                f"{self.computed} computed{rate}, {self.from_cache} read from cache")


def extract_variants(
    extraction: Extraction,
    paths: list[Path],
    recipe,
    count: int,
    spec: ModuleSpec,
    loaded,
    cache: BottleneckCache | None,
    batch_size: int = 32,
    workers: int | None = None,
    warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> Variants:
    """Features of variants 1..count (augment.Recipe `recipe`) of each readable path's content.

    Each variant is stored under augment.variant_key, so only those never computed
    are: the photo is decoded once for all its missing variants.
    """
    from tensorguess.features import augment

    identity = recipe.identity()
    contents = list(dict.fromkeys(extraction.digests[p] for p in paths if extraction.readable(p)))
    keys = [augment.variant_key(identity, digest, v) for digest in contents for v in range(1, count + 1)]
    features = np.empty((len(keys), extraction.features.shape[1]), np.float32)
    good = cache.store.read_into(keys, features) if cache else np.zeros(len(keys), bool)
    result = Variants(features, {d: k * count for k, d in enumerate(contents)}, count, identity,
                      from_cache=int(good.sum()))
    todo = {k: np.flatnonzero(~good[k * count:(k + 1) * count]).tolist() for k in range(len(contents))}
    todo = {k: missing for k, missing in todo.items() if missing}
    if todo:
        path_of = {}
        for path in paths:
            path_of.setdefault(extraction.digests.get(path), path)
        source = {path_of[contents[k]]: k for k in todo}
        run = compile_features(spec, loaded)
        started = time.perf_counter()
        pending: list[tuple[int, np.ndarray, augment.Parameters]] = []  # (row, image, parameters)

        def flush() -> None:
            rows = [row for row, _, _ in pending]
            images = augment.distort(np.stack([image for _, image, _ in pending]),
                                     [drawn for _, _, drawn in pending])
            features[rows] = run(images).numpy()
            good[rows] = True
            if cache:
                cache.put_many([(keys[row], features[row]) for row in rows])
            result.computed += len(rows)
            bar.update(len(rows))
            pending.clear()

        with progress(sum(len(m) for m in todo.values()), "Augmenting") as bar:
            for batch in decoded_batches(list(source), spec.input_size, batch_size, workers):
                images = iter(batch.pixels if batch.pixels is not None else [])
                for path, error in batch.entries:
                    k = source[path]
                    if error:
                        result.lost.append(Skipped(path, str(error)))
                        warn(result.lost[-1].warning())
                        continue
                    image = next(images)
                    for v in todo[k]:
                        row = k * count + v
                        pending.append((row, image, augment.parameters(recipe, keys[row], spec.input_size)))
                        if len(pending) == batch_size:
                            flush()
            if pending:
                flush()
        result.seconds = time.perf_counter() - started
    for k, digest in enumerate(contents):  # a photo unreadable now has no variants
        if not good[k * count:(k + 1) * count].all():
            del result.first_row[digest]
    return result


def _digests(paths: list[Path], cache: BottleneckCache | None, workers: int) -> list:
    """The content hash of each path (or why it cannot be read), from the stat index when
    the photo's size, mtime and inode are those it remembers, else read and hashed (on
    `workers` threads), and then remembered."""
    known = cache.store.known_digests() if cache else {}
    found: list = [None] * len(paths)
    to_hash = []
    for i, path in enumerate(paths):
        try:
            status = os.stat(path)
        except OSError as error:
            found[i] = UnreadableImage(f"cannot read the file ({error.strerror or error})")
            continue
        key = os.path.abspath(path)
        remembered = known.get(key)
        if remembered is not None and remembered[0] == stat_key(status) and status.st_size:
            found[i] = remembered[1]
        else:
            to_hash.append((i, key, stat_key(status)))
    hashed = bounded_map(_hash_or_error, [paths[i] for i, _, _ in to_hash], workers, 64)
    new = []
    for (i, key, stat), digest in zip(to_hash, hashed, strict=True):
        found[i] = digest
        if not isinstance(digest, UnreadableImage):
            new.append((key, stat, digest))
    if cache:
        cache.store.remember(new)
    return found


def _hash_or_error(path: Path) -> str | UnreadableImage:
    try:
        if path.stat().st_size == 0:
            return UnreadableImage("the file is empty (0 bytes)")
        return content_hash(path)
    except OSError as error:
        return UnreadableImage(f"cannot read the file ({error.strerror or error})")


def _skip(result: Extraction, path: Path, reason: str, warn: Callable[[str], None]) -> None:
    skipped = Skipped(path, reason)
    result.skipped.append(skipped)
    warn(skipped.warning())
