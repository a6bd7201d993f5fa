"""Memory grows with the feature matrix and nothing else.

One matrix holds every photo's features (a row per distinct content); the checks run
on it without copying it, the cross-validation standardises a fold in chunks, and
guessDir's manifest keeps nothing of what it appends. NumPy's allocations are traced
(tracemalloc sees them), and each check is run at two sizes: what its peak allocation
grows by, against what the matrix grows by, is what a bound says. The searches' own
tiles are of a fixed size and do not count; what the code did before (stacks,
normalised and float64 copies of the whole matrix) grew two to four times as fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
from conftest import MOBILENET_V1, SUPERHEROES

from tensorguess.checks import data_checks, label_issues
from tensorguess.data.dataset import ImageSet
from tensorguess.features import bottlenecks, modules
from tensorguess.features.shared_matrix import aligned_empty, as_tensor, shareable
from tensorguess.sort.folder import Manifest

D, CLASSES = 1024, 4
SMALL, LARGE = 3000, 9000  # 12 and 37 MB matrices


def synthetic(n: int, d: int = D) -> tuple[ImageSet, dict, bottlenecks.Extraction]:
    """An image set of n photos in CLASSES labels and an Extraction of random features."""
    rng = np.random.default_rng(0)
    labels = [f"class{k}" for k in range(CLASSES)]
    root = Path("/photos")
    files = {label: [root / label / f"{i}.jpg" for i in range(k, n, CLASSES)]
             for k, label in enumerate(labels)}
    centres = rng.standard_normal((CLASSES, d)).astype(np.float32)
    # Aligned, as extract() allocates it: the head reads it in place (an unaligned one is copied).
    extraction = bottlenecks.Extraction(features=aligned_empty((n, d)))
    row = 0
    for k, label in enumerate(labels):
        for path in files[label]:
            extraction.features[row] = centres[k] + rng.standard_normal(d, dtype=np.float32)
            digest = f"{row:064x}"
            extraction.digests[path], extraction.rows[digest] = digest, row
            row += 1
    return ImageSet(root, labels, labels, files), files, extraction


def peak_allocated(function) -> int:
    """Bytes NumPy (and Python) allocated at the peak of `function()`, above what was held before."""
    tracemalloc.start()
    try:
        function()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def growth(check) -> float:
    """What the peak allocation of `check(image_set, files, extraction)` grows by from SMALL to
    LARGE photos, as a share of what the matrix grows by."""
    peaks, sizes = [], []
    for n in (SMALL, LARGE):
        photos = synthetic(n)
        sizes.append(photos[2].features.nbytes)
        peaks.append(peak_allocated(lambda photos=photos: check(*photos)))
    return (peaks[1] - peaks[0]) / (sizes[1] - sizes[0])


def test_the_duplicate_checks_search_the_matrix_itself_without_copying_it():
    def check(image_set, files, extraction):
        checks = data_checks.duplicate_checks(image_set, files, extraction, None, None, lambda line: None)
        assert checks.groups == [] and checks.threshold >= data_checks.BASE_THRESHOLD

    assert growth(check) < 0.35  # per photo: a norm, a fingerprint, a digest, bookkeeping; a copy is 1.0


def test_the_automatic_threshold_makes_no_normalised_copy():
    def check(image_set, files, extraction):
        digests = sorted(extraction.rows)
        labels = [f"class{i % CLASSES}" for i in range(len(digests))]
        data_checks.automatic_threshold(extraction.features, labels, digests)

    assert growth(check) < 0.25  # per photo: a norm and its bookkeeping; a normalised copy is 1.0


def test_no_fold_is_copied_out_of_the_matrix():
    """The cross-validation's NumPy side: the head reads a fold's rows through an index and the
    held-out fold is scored in chunks; no copy of a fold, in float32 or float64 (the code before
    copied the whole matrix once, in float32: 1.0)."""
    def check(image_set, files, extraction):
        n = len(extraction.features)
        rows = np.random.default_rng(1).permutation(n)
        result = label_issues.out_of_fold_probabilities(extraction.features, rows % CLASSES, CLASSES, folds=2,
                                                        steps=20, rows=rows)
        assert result.shape == (n, CLASSES) and np.allclose(result.sum(axis=1), 1)

    # The scores, the folds, the indices ([N, classes] and [N]) and TensorFlow's own bookkeeping:
    # 0.17-0.19 measured alone, 0.2009 once in the whole suite (tracemalloc also counts what other
    # threads allocate meanwhile); one fold copied, of the two, is 0.5 in float32 and 1.0 in float64.
    assert growth(check) < 0.3


def test_rows_give_the_same_out_of_fold_scores_as_the_photos_own_matrix():
    extraction = synthetic(SMALL)[2]
    rows = np.random.default_rng(2).permutation(SMALL)[:600]
    given = rows % CLASSES
    by_rows = label_issues.out_of_fold_probabilities(extraction.features, given, CLASSES, steps=30, rows=rows)
    copied = label_issues.out_of_fold_probabilities(extraction.features[rows], given, CLASSES, steps=30)
    np.testing.assert_array_equal(by_rows, copied)


def test_an_extraction_is_one_matrix_with_a_row_per_content(tmp_path):
    spec, loaded = modules.resolve(str(MOBILENET_V1))
    sources = sorted((SUPERHEROES / "elsa").iterdir())[:6]
    paths = []
    for photo in sources:
        paths.append(tmp_path / photo.name)
        shutil.copy(photo, paths[-1])
    paths.append(tmp_path / "same as the first.jpg")
    shutil.copy(sources[0], paths[-1])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a photo")
    paths.insert(2, tmp_path / "broken.jpg")  # its row is closed up
    cache = bottlenecks.BottleneckCache(tmp_path / "cache", spec)
    for _ in ("computed", "from the store"):
        extraction = bottlenecks.extract(paths, spec, loaded, cache, warn=lambda line: None)
        assert extraction.features.shape == (6, 1024) and extraction.features.dtype == np.float32
        assert not extraction.readable(tmp_path / "broken.jpg")
        assert extraction.rows[extraction.digests[paths[-1]]] == extraction.rows[extraction.digests[paths[0]]]
        assert np.shares_memory(extraction.vector(paths[3]), extraction.features)
        assert sorted(extraction.rows.values()) == list(range(6))
    fresh = bottlenecks.extract(paths, spec, loaded, None, warn=lambda line: None)
    readable = [path for path in paths if fresh.readable(path)]
    np.testing.assert_allclose(extraction.matrix(readable), fresh.matrix(readable), atol=1e-5)


def test_the_manifest_keeps_only_what_a_rerun_needs_and_nothing_it_appends(tmp_path):
    manifest = Manifest(tmp_path / "guesses.jsonl", warn=print)
    scores = {f"label {k}": 0.01 for k in range(20)}
    for i in range(500):
        manifest.append({"source": f"{i}.jpg", "copy": f"a--99999 ({i}).jpg", "label": "a", "score": 0.9,
                         "scores": scores, "root": "/photos", "model": "m"})
    assert manifest.earlier == []
    manifest.close()
    again = Manifest(tmp_path / "guesses.jsonl", warn=print)
    assert len(again.earlier) == 500 and again.earlier[7].source == "7.jpg"
    assert again.earlier[7].copy == "a--99999 (7).jpg" and again.earlier[7].model == "m"
    again.close()


def resident_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def test_trainings_in_one_process_do_not_keep_each_others_features():
    """Five folds of the label check, then the head, train in one process: a traced function
    that captured its features would keep them all (TensorFlow keeps traced functions), 200 MB
    a fold at 40,000 photos. The features are passed to it instead, so memory stays flat."""
    from tensorguess.head.train import Rows, Schedule, train_head

    rng = np.random.default_rng(0)
    features = rng.standard_normal((40000, D), dtype=np.float32)  # 164 MB
    labels = rng.integers(0, CLASSES, len(features))
    after = []
    for seed in range(4):
        train_head(Rows(features, labels), Rows(features[:8000], labels[:8000]), CLASSES,
                   Schedule(20, 0.01, 100, -1, 20, seed))
        after.append(resident_mb())
    # The first two differ by TensorFlow's own warm-up; from then on, nothing accumulates.
    assert after[3] - after[1] < 0.5 * features.nbytes / 2**20, after


def test_an_aligned_matrix_is_read_by_tensorflow_in_place_and_any_other_is_copied():
    matrix = aligned_empty((1000, 8))
    matrix[:] = 1
    tensor = as_tensor(matrix)
    matrix[3, 2] = 7  # never done while a tensor lives, but it shows whether the memory is shared
    assert float(tensor[3, 2]) == 7
    assert np.shares_memory(extraction_matrix_of(matrix), matrix) is False
    for other in (aligned_empty((8001,))[1:].reshape(1000, 8),  # off the 64-byte boundary
                  matrix[:, ::2],  # not contiguous
                  np.ones((0, 8), np.float32)):
        tensor = as_tensor(other)
        if other.size:
            other[3, 2] = 9
            assert float(tensor[3, 2]) != 9
    frozen = matrix.copy()
    frozen.flags.writeable = False
    assert not shareable(frozen)


def extraction_matrix_of(matrix: np.ndarray) -> np.ndarray:
    """What retrain trains on: Extraction.matrix's copy of some rows, aligned so it can be shared."""
    extraction = bottlenecks.Extraction(features=matrix, rows={"a": 0, "b": 5},
                                        digests={Path("a.jpg"): "a", Path("b.jpg"): "b"})
    copy = extraction.matrix([Path("b.jpg"), Path("a.jpg")])
    assert shareable(copy) and np.array_equal(copy, matrix[[5, 0]])
    return copy


PEAK_SCRIPT = """
import json, numpy as np
from tensorguess.checks import label_issues
from tensorguess.features.shared_matrix import aligned_empty
from tensorguess.head.train import Rows, Schedule, train_head

n, d, classes = 60000, 1024, 4
labels = np.arange(n) % classes
# TensorFlow's kernels and first tracing happen before the peak is read.
warm = aligned_empty((400, d))
warm[:] = np.arange(400)[:, None] % 7
label_issues.out_of_fold_probabilities(warm, labels[:400], classes, folds=2, steps=20)
matrix = aligned_empty((n, d))
rng = np.random.default_rng(0)
for start in range(0, n, 4096):
    rng.standard_normal(out=matrix[start:start + 4096], dtype=np.float32)
held = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
label_issues.out_of_fold_probabilities(matrix, labels, classes, folds=2, steps=20)
validation = aligned_empty((2000, d))
validation[:] = matrix[:2000]
train_head(Rows(matrix, labels), Rows(validation, labels[:2000]), classes, Schedule(20, 0.01, 100, -1, 10, 0))
# VmHWM, not getrusage's ru_maxrss: that one is kept across exec, so it would start at the
# size of the pytest process this one was forked from.
status = open("/proc/self/status").read()
peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
print(json.dumps({"held": held, "peak": peak, "matrix": matrix.nbytes / 2**20}))
"""


def test_neither_the_folds_nor_the_head_copy_the_feature_matrix_into_tensorflow():
    """The peak of the label check's folds and of the head's training, above the matrix they
    read, in a process of its own so that its peak is theirs. tf.constant copied the matrix and
    held a second, transient copy while doing so; the folds also copied their rows first: at
    least 1.5 matrices above it (100,000 photos: what put a cold run over 2.5 GB)."""
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["peak"] - figures["held"] < 0.25 * figures["matrix"], figures
