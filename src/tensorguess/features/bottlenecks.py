"""Bottleneck features: one batched, pipelined pass over the images, and their cache.

The cache is keyed by each image's content hash inside a folder named after the
module's identity: renaming or moving photos costs nothing, a changed module
gets a fresh folder, and every entry is written to a temporary file and renamed
into place, so a killed run never leaves a half-written entry behind.
"""

from __future__ import annotations

import io
import re
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tensorguess import strict_json
from tensorguess.data.images import Skipped, UnreadableImage, content_hash
from tensorguess.features.modules import ModuleSpec, feature_function, to_value_range
from tensorguess.features.pipeline import bounded_map, decoded_batches, default_workers, progress
from tensorguess.files import write_atomically


class BottleneckCache:
    """Feature vectors of one module, one small .npy file per image content hash."""

    def __init__(self, root: Path, spec: ModuleSpec,
                 warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
        self.dir = Path(root) / spec.cache_name
        self.warn = warn
        self.unwritable: str | None = None  # why entries cannot be stored, once that is known
        self.warned = False
        about = self.dir / "module.json"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not about.exists():
                write_atomically(about, strict_json.dumps(spec.describe(), indent=1).encode())
        except OSError as error:
            # A read-only cache still serves what it holds; only new entries are lost.
            self.unwritable = error.strerror or str(error)

    def _path(self, digest: str) -> Path:
        return self.dir / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        path = self._path(digest)
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # missing, or damaged outside our control: recompute it
        if vector.ndim != 1 or vector.dtype != np.float32 or not np.all(np.isfinite(vector)):
            return None
        return vector

    def put(self, digest: str, vector: np.ndarray) -> None:
        """Store one entry; if the cache cannot take it, say so once and go on without storing."""
        if self.unwritable is None:
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(vector, dtype=np.float32), allow_pickle=False)
            try:
                write_atomically(self._path(digest), buffer.getvalue())
                return
            except OSError as error:
                self.unwritable = error.strerror or str(error)
        if not self.warned:
            self.warn(f"tensor-guess: cannot store bottlenecks in {self.dir} ({self.unwritable}): "
                      "the missing ones are computed for this run only; give a writable "
                      "--bottleneck_dir to keep them")
            self.warned = True


@dataclass
class Extraction:
    """What one pass produced: a vector per readable path and what was skipped."""

    vectors: dict[Path, np.ndarray] = field(default_factory=dict)
    digests: dict[Path, str] = field(default_factory=dict)  # content hash of every hashed path
    skipped: list[Skipped] = field(default_factory=list)
    computed: int = 0
    from_cache: int = 0
    seconds: float = 0.0

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


def classification_warning(spec: ModuleSpec, loaded) -> str | None:
    """A warning when the module gives class scores (ImageNet's 1000 or 1001 logits), not features.

    Such a module still trains a classifier, but on what ImageNet's last layer kept
    of each photo: its feature_vector sibling is what transfer learning wants.
    """
    size = spec.input_size
    width = int(compile_features(spec, loaded)(np.zeros([1, size, size, 3], np.float32)).shape[-1])
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
) -> Extraction:
    """Features for every readable path, computing only those not in the cache."""
    workers = workers or default_workers()
    result = Extraction()
    by_digest: dict[str, list[Path]] = {}
    for path, digest in zip(paths, bounded_map(_hash_or_error, paths, workers, 64), strict=True):
        if isinstance(digest, UnreadableImage):
            _skip(result, path, str(digest), warn)
            continue
        by_digest.setdefault(digest, []).append(path)
        result.digests[path] = digest

    missing = []
    for digest, same in by_digest.items():
        vector = cache.get(digest) if cache else None
        if vector is None:
            missing.append(digest)
        else:
            result.from_cache += len(same)
            result.vectors.update((p, vector) for p in same)
    if not missing:
        return result

    run = compile_features(spec, loaded)
    started = time.perf_counter()
    first_paths = [by_digest[digest][0] for digest in missing]
    digest_of = dict(zip(first_paths, missing, strict=True))
    with progress(len(missing), "Bottlenecks") as bar:
        for batch in decoded_batches(first_paths, spec.input_size, batch_size, workers):
            vectors = iter(run(batch.pixels).numpy() if batch.pixels is not None else [])
            for path, error in batch.entries:
                if error:
                    for same in by_digest[digest_of[path]]:
                        _skip(result, same, str(error), warn)
                    continue
                vector = next(vectors)
                if cache:
                    cache.put(digest_of[path], vector)
                result.vectors.update((p, vector) for p in by_digest[digest_of[path]])
                result.computed += 1
            bar.update(len(batch.entries))
    result.seconds = time.perf_counter() - started
    return result


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
