"""Suspected label errors: sign-digits with 40 labels moved, and our confident learning against cleanlab's."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from conftest import MOBILENET_V1, SIGN_DIGITS

from tensorguess.checks import label_issues
from tensorguess.checks.label_issues import (
    cached_out_of_fold,
    find_label_issues,
    out_of_fold_key,
    out_of_fold_probabilities,
    suspected_label_errors,
)
from tensorguess.head.calibration import fit_temperature
from tensorguess.metrics import softmax

MOVED, FIRST, FOUND = 40, 80, 32  # the issue's numbers: 40 photos moved, >= 32 of them in the first 80


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Sign-digits bottlenecks (MobileNet v1) with their folder labels, names and content digests."""
    from tensorguess.data import dataset
    from tensorguess.data.images import content_hash
    from tensorguess.features import bottlenecks, modules

    spec, loaded = modules.resolve(str(MOBILENET_V1))
    image_set = dataset.discover(SIGN_DIGITS, warn=print)
    paths = [path for label in image_set.labels for path in image_set.files[label]]
    cache = bottlenecks.BottleneckCache(tmp_path_factory.mktemp("bottlenecks"), spec)
    extraction = bottlenecks.extract(paths, spec, loaded, cache)
    readable = [path for path in paths if extraction.readable(path)]
    index = {label: i for i, label in enumerate(image_set.labels)}
    return {
        "features": extraction.matrix(readable),
        "truth": np.array([index[path.parent.name] for path in readable]),
        "files": [path.relative_to(SIGN_DIGITS).as_posix() for path in readable],
        "digests": [content_hash(path) for path in readable],
        "labels": image_set.labels,
        "extractor": spec.identity,
    }


@pytest.fixture(scope="module")
def moved(digits):
    """40 photos "moved into wrong folders" (their labels changed at random), and the out-of-fold scores."""
    rng = np.random.default_rng(2024)
    truth = digits["truth"]
    chosen = rng.choice(len(truth), MOVED, replace=False)
    given = truth.copy()
    given[chosen] = (truth[chosen] + rng.integers(1, len(digits["labels"]), MOVED)) % len(digits["labels"])
    started = time.perf_counter()
    probabilities = out_of_fold_probabilities(digits["features"], given, len(digits["labels"]))
    seconds = time.perf_counter() - started
    return chosen, given, probabilities, seconds


def test_most_photos_moved_into_wrong_folders_are_among_the_first_suspects(digits, moved):
    chosen, given, probabilities, seconds = moved
    files = digits["files"]
    suspects = suspected_label_errors(files, digits["labels"], given, probabilities, limit=FIRST)
    moved_names = {files[i] for i in chosen}
    found = [item for item in suspects if item["file"] in moved_names]
    print(f"{len(found)} of {MOVED} moved photos among the first {FIRST} suspects "
          f"(out-of-fold scores in {seconds:.1f} s)")
    assert len(found) >= FOUND
    assert len(suspects) == FIRST
    for item in found:  # the suggestion for a moved photo is mostly its real folder
        assert item["given"] == digits["labels"][given[files.index(item["file"])]]
    right = sum(item["suggested"] == item["file"].split("/")[0] for item in found)
    assert right >= 0.8 * len(found)
    logits = np.log(np.maximum(probabilities, 1e-300))
    temperature = fit_temperature(logits, given)
    assert temperature > 1.5  # the head is sharp: its raw scores are nearly all 1.000
    calibrated = softmax(logits / temperature)
    for item in suspects:
        i = files.index(item["file"])
        assert set(item) == {"file", "given", "suggested", "score"} and item["given"] != item["suggested"]
        assert digits["labels"][probabilities[i].argmax()] == item["suggested"]
        assert item["score"] == pytest.approx(calibrated[i].max(), abs=1e-6)
    scores = [item["score"] for item in suspects]
    assert min(scores) < 0.7 and np.median(scores) < 0.99  # informative, not all 1.000
    own = [probabilities[files.index(item["file"]), digits["labels"].index(item["given"])]
           for item in suspects]
    assert own == sorted(own)  # the least likely given label first


def cleanlab_ranking(labels, pred_probs) -> np.ndarray:
    from cleanlab.filter import find_label_issues as reference

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns of classes with too few examples
        # n_jobs=1: no forked workers in a process running TensorFlow; cleanlab's results do not
        # depend on it.
        return reference(labels, pred_probs, return_indices_ranked_by="self_confidence", n_jobs=1)


def test_our_ranking_is_cleanlabs_on_real_scores(digits, moved):
    _, given, probabilities, _ = moved
    ours = find_label_issues(given, probabilities)
    assert len(ours) >= FIRST
    assert np.array_equal(ours, cleanlab_ranking(given, probabilities))
    clean = out_of_fold_probabilities(digits["features"], digits["truth"], len(digits["labels"]), seed=1)
    assert np.array_equal(find_label_issues(digits["truth"], clean), cleanlab_ranking(digits["truth"], clean))


@pytest.mark.parametrize("seed", range(100))
def test_our_ranking_is_cleanlabs_on_random_scores(seed):
    rng = np.random.default_rng(seed)
    classes = int(rng.integers(2, 15))
    n = int(rng.integers(3 * classes, 500))
    labels = rng.integers(0, classes, n)
    labels[:classes] = np.arange(classes)
    if seed % 4 == 1:
        labels[labels == classes - 1] = 0  # a class no photo is given
        labels[0] = 1 if classes > 2 else 0
    if seed % 4 == 2:
        labels[labels == 1] = 0
        labels[5] = 1  # a class of one photo
    scores = softmax(rng.normal(size=(n, classes)) * rng.uniform(0.3, 8))
    scores[np.arange(n), labels] += rng.uniform(0, 1, n) * (seed % 3)  # from noise to mostly right
    scores /= scores.sum(axis=1, keepdims=True)
    if seed % 5 == 0:
        scores = np.round(scores, 2) + 1e-9  # many ties
        scores /= scores.sum(axis=1, keepdims=True)
    assert np.array_equal(find_label_issues(labels, scores), cleanlab_ranking(labels, scores))


def test_a_set_with_no_doubtful_label_has_no_suspects():
    labels = np.repeat(np.arange(3), 10)
    scores = np.full((30, 3), 0.05)
    scores[np.arange(30), labels] = 0.9
    assert find_label_issues(labels, scores).tolist() == cleanlab_ranking(labels, scores).tolist() == []
    assert suspected_label_errors([f"{i}.jpg" for i in range(30)], ["a", "b", "c"], labels, scores) == []


def test_out_of_fold_scores_are_deterministic_for_a_seed(digits):
    subset = np.flatnonzero(np.arange(len(digits["truth"])) % 4 == 0)
    features, truth = digits["features"][subset], digits["truth"][subset]
    first = out_of_fold_probabilities(features, truth, 10, seed=3)
    assert first.shape == (len(subset), 10) and first.dtype == np.float64
    assert np.allclose(first.sum(axis=1), 1)
    assert np.array_equal(first, out_of_fold_probabilities(features, truth, 10, seed=3))
    assert not np.array_equal(first, out_of_fold_probabilities(features, truth, 10, seed=4))
    folds = label_issues.stratified_folds(truth, 5, 3)
    for k in range(10):  # every class spread over the folds evenly
        sizes = np.bincount(folds[truth == k], minlength=5)
        assert sizes.max() - sizes.min() <= 1
    assert np.abs(np.bincount(folds) - len(truth) / 5).max() <= 1


def test_out_of_fold_scores_are_reused_until_a_label_changes(digits, moved, tmp_path):
    _, given, probabilities, _ = moved
    store = tmp_path / "store" / "out_of_fold.npz"
    calls = []

    def compute():
        calls.append(1)
        return probabilities

    key = out_of_fold_key(digits["digests"], given, digits["extractor"])
    first, cached = cached_out_of_fold(store, key, compute)
    assert not cached and len(calls) == 1 and np.array_equal(first, probabilities)
    again, cached = cached_out_of_fold(store, out_of_fold_key(digits["digests"], given.tolist(),
                                                              digits["extractor"]), compute)
    assert cached and len(calls) == 1 and np.array_equal(again, probabilities)
    with np.load(store, allow_pickle=False) as stored:  # plain arrays, no pickle
        assert set(stored.files) == {"key", "probabilities"}

    relabelled = given.copy()
    relabelled[7] = (relabelled[7] + 1) % 10
    changed = out_of_fold_key(digits["digests"], relabelled, digits["extractor"])
    assert changed != key
    _, cached = cached_out_of_fold(store, changed, compute)
    assert not cached and len(calls) == 2
    _, cached = cached_out_of_fold(store, changed, compute)
    assert cached and len(calls) == 2
    others = {out_of_fold_key(digits["digests"], given, "another module"),
              out_of_fold_key(digits["digests"], given, digits["extractor"], folds=10),
              out_of_fold_key(digits["digests"], given, digits["extractor"], seed=1),
              out_of_fold_key(digits["digests"], given, digits["extractor"], classes=11),
              out_of_fold_key(digits["digests"][::-1], given, digits["extractor"])}
    assert len(others | {key}) == 6

    store.write_bytes(b"damaged")
    scores, cached = cached_out_of_fold(store, changed, compute)
    assert not cached and len(calls) == 3 and scores.shape == probabilities.shape
    assert [p.name for p in store.parent.iterdir()] == ["out_of_fold.npz"]  # no temporary left


def test_an_unwritable_store_still_gives_the_scores(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    lines: list[str] = []
    scores, cached = cached_out_of_fold(blocker / "out_of_fold.npz", "k", lambda: np.eye(3),
                                        warn=lines.append)
    assert not cached and np.array_equal(scores, np.eye(3))
    assert len(lines) == 1 and lines[0].startswith("tensor-guess: cannot store out-of-fold scores in ")
