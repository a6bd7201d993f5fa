"""near_duplicates.find_pairs: exact against brute force, incremental equal to from scratch, robust store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_V1, SHARED, SIGN_DIGITS, SUPERHEROES
from PIL import Image, ImageEnhance

from tensorguess.features import near_duplicates
from tensorguess.features.near_duplicates import DEFAULT_THRESHOLD, FLOOR, STORE_NAME, find_pairs

DIM = 48
BLOCK = 256  # small tiles, so that a few thousand vectors cross many tile boundaries


def planted(count: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Non-negative vectors (as ReLU features are) with near-copies planted at many cosines."""
    rng = np.random.default_rng(seed)
    vectors = rng.random((count, DIM), dtype=np.float32) ** 3
    for _ in range(count // 7):  # near-copies at noise levels from tiny to large
        for level in (0.02, 0.1, 0.3):
            source, target = rng.integers(0, count, 2)
            if target != source:
                vectors[target] = vectors[source] + level * rng.random(DIM, dtype=np.float32)
    return [f"{k:040x}" for k in range(count)], vectors


def brute_force(vectors: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    unit = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    similar = unit @ unit.T
    i, j = np.nonzero(np.triu(similar >= threshold, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def clear_threshold(vectors: np.ndarray, near: float) -> float:
    """A threshold near `near` that no cosine lies within 1e-4 of, so float rounding cannot flip a pair."""
    unit = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    values = np.sort((unit @ unit.T)[np.triu_indices(len(vectors), 1)])
    for candidate in near + np.arange(0, 0.02, 0.0005):
        if not np.any(np.abs(values - candidate) < 1e-4):
            return float(candidate)
    raise AssertionError("no clear threshold")


def as_set(pairs) -> set[tuple[int, int]]:
    return {(i, j) for i, j, _ in pairs}


def same_pairs(got, expected) -> None:
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in expected]
    np.testing.assert_allclose([c for *_, c in got], [c for *_, c in expected], atol=1e-5)


@pytest.fixture
def searched(monkeypatch):
    """Every _search call's (rows, columns) counts, to tell what was searched again."""
    calls: list[tuple[int, int]] = []
    real = near_duplicates._search

    def spy(vectors, rows, inverse_norms, left, right, *args, **kwargs):
        calls.append((len(left), len(right)))
        return real(vectors, rows, inverse_norms, left, right, *args, **kwargs)

    monkeypatch.setattr(near_duplicates, "_search", spy)
    return calls


@pytest.mark.parametrize("count,block", [(2500, BLOCK), (1000, 1000), (1001, 1000), (600, 2048)])
def test_pairs_equal_brute_force_across_tile_boundaries(count, block):
    digests, vectors = planted(count)
    threshold = clear_threshold(vectors, 0.93)
    pairs = find_pairs(digests, vectors, threshold, block=block)
    expected = brute_force(vectors, threshold)
    assert len(expected) > 50
    assert as_set(pairs) == expected
    assert [(i, j) for i, j, _ in pairs] == sorted(expected)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for i, j, cosine in pairs:
        assert i < j and abs(cosine - float(unit[i] @ unit[j])) < 1e-5 and cosine <= 1.0


def test_repeated_digests_are_searched_once_by_their_first_index(searched):
    digests, vectors = planted(700)
    threshold = clear_threshold(vectors, 0.93)
    expected = find_pairs(digests, vectors, threshold, block=BLOCK)
    # The same contents listed again (the caller joins them by digest): nothing new, nothing lost.
    twice = find_pairs(digests + digests[:300], np.concatenate([vectors, vectors[:300]]), threshold,
                       block=BLOCK)
    assert twice == expected
    assert searched[-1] == (700, 700)


def test_zero_vectors_join_nothing_and_bad_input_is_refused():
    vectors = np.zeros((3, 4), np.float32)
    vectors[2] = 1.0
    assert find_pairs(["a", "b", "c"], vectors, 0.9) == []
    assert find_pairs([], np.zeros((0, 4), np.float32), 0.9) == []
    with pytest.raises(ValueError):
        find_pairs(["a", "b"], vectors, 0.9)
    with pytest.raises(ValueError):
        find_pairs(["a", "b", "c"], vectors, 1.5)
    vectors[0, 0] = np.nan
    with pytest.raises(ValueError):
        find_pairs(["a", "b", "c"], vectors, 0.9)


def test_incremental_runs_equal_from_scratch(tmp_path, searched):
    digests, vectors = planted(2000, seed=3)
    threshold = clear_threshold(vectors, 0.95)
    store = tmp_path / STORE_NAME

    def stored_then_scratch(names, chosen, at):
        """(pairs from the store, what that searched, pairs from scratch)."""
        searched.clear()
        got = find_pairs(names, chosen, at, store, block=BLOCK)
        calls = list(searched)
        return got, calls, find_pairs(names, chosen, at, block=BLOCK)

    first, calls, scratch = stored_then_scratch(digests[:1500], vectors[:1500], threshold)
    same_pairs(first, scratch)
    assert calls == [(1500, 0), (1500, 1500)] and store.is_file()

    # 500 new photos: only new x (old + new) is searched.
    grown, calls, scratch = stored_then_scratch(digests, vectors, threshold)
    assert calls == [(500, 1500), (500, 500)]
    same_pairs(grown, scratch)

    # Some gone, in another order: nothing is searched, the rest answered from the store.
    keep = np.random.default_rng(0).permutation(2000)[:1200]
    fewer, calls, scratch = stored_then_scratch([digests[k] for k in keep], vectors[keep], threshold)
    assert calls == []
    same_pairs(fewer, scratch)

    # Any threshold at or above the floor is answered from the store as well.
    for moved in (clear_threshold(vectors, FLOOR + 0.01), clear_threshold(vectors, 0.98)):
        got, calls, scratch = stored_then_scratch(digests, vectors, moved)
        assert calls == []
        same_pairs(got, scratch)

    # Below the floor the store cannot answer: all is searched again, at the lower floor.
    lower = clear_threshold(vectors, FLOOR - 0.05)
    got, calls, scratch = stored_then_scratch(digests, vectors, lower)
    assert calls == [(2000, 0), (2000, 2000)]
    same_pairs(got, scratch)
    _, calls, _ = stored_then_scratch(digests, vectors, lower)
    assert calls == []


def test_a_digest_gone_and_back_is_searched_again(tmp_path, searched):
    digests, vectors = planted(900, seed=5)
    threshold = clear_threshold(vectors, 0.95)
    store = tmp_path / STORE_NAME
    find_pairs(digests[:800], vectors[:800], threshold, store, block=BLOCK)
    # 100 new photos while 200 old ones are away: the store then holds only the 700 here.
    here = digests[200:]
    find_pairs(here, vectors[200:], threshold, store, block=BLOCK)
    searched.clear()
    back = find_pairs(digests, vectors, threshold, store, block=BLOCK)
    assert searched == [(200, 700), (200, 200)]
    same_pairs(back, find_pairs(digests, vectors, threshold, block=BLOCK))


def test_changed_vectors_under_known_digests_are_searched_again(tmp_path, searched):
    digests, vectors = planted(800, seed=7)
    threshold = clear_threshold(vectors, 0.95)
    store = tmp_path / STORE_NAME
    find_pairs(digests, vectors, threshold, store, block=BLOCK)
    other = vectors.copy()
    other[:50] = np.random.default_rng(9).random((50, DIM), dtype=np.float32)
    searched.clear()
    got = find_pairs(digests, other, threshold, store, block=BLOCK)
    assert searched == [(50, 750), (50, 50)]
    same_pairs(got, find_pairs(digests, other, threshold, block=BLOCK))


def damaged_stores(good: bytes, tmp_path: Path) -> dict[str, bytes]:
    import io

    def npz(**arrays) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    with np.load(io.BytesIO(good), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    out_of_range = dict(arrays, pairs=arrays["pairs"] + 10**6)
    reversed_pairs = dict(arrays, pairs=arrays["pairs"][:, ::-1].copy())
    other_dim = dict(arrays, dim=np.array(7, np.int64))
    wrong_type = dict(arrays, cosines=arrays["cosines"].astype(np.float64))
    short = dict(arrays, fingerprints=arrays["fingerprints"][:-1])
    npy = io.BytesIO()
    np.save(npy, np.zeros(3))
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "noise": np.random.default_rng(0).bytes(4096),
        "a .npy file": npy.getvalue(),
        "another npz": npz(x=np.arange(3)),
        "pairs out of range": npz(**out_of_range),
        "pairs reversed": npz(**reversed_pairs),
        "other dimension": npz(**other_dim),
        "float64 cosines": npz(**wrong_type),
        "fingerprints short": npz(**short),
        "a pickle": npz(**dict(arrays, digests=np.array([object()], dtype=object))),
    }


def test_a_damaged_or_foreign_store_is_ignored_and_rebuilt(tmp_path, searched):
    digests, vectors = planted(700, seed=11)
    threshold = clear_threshold(vectors, 0.95)
    expected = find_pairs(digests, vectors, threshold, block=BLOCK)
    store = tmp_path / STORE_NAME
    find_pairs(digests, vectors, threshold, store, block=BLOCK)
    good = store.read_bytes()
    for name, content in damaged_stores(good, tmp_path).items():
        store.write_bytes(content)
        searched.clear()
        got = find_pairs(digests, vectors, threshold, store, block=BLOCK)
        assert searched == [(700, 0), (700, 700)], name
        same_pairs(got, expected)
        searched.clear()
        same_pairs(find_pairs(digests, vectors, threshold, store, block=BLOCK), expected)
        assert searched == [], f"{name}: not rebuilt"
    # A store of other features under the same digests (another module's) is not believed either.
    _, foreign = planted(700, seed=12)
    find_pairs(digests, foreign, threshold, store, block=BLOCK)
    searched.clear()
    same_pairs(find_pairs(digests, vectors, threshold, store, block=BLOCK), expected)
    assert searched == [(700, 0), (700, 700)]


def capped(digests: list[str], pairs, partners: int) -> set[tuple[int, int]]:
    """`pairs` less those outside both photos' `partners` most similar (equal cosines: by digest)."""
    of: dict[int, list[tuple[float, str, int]]] = {}
    for i, j, cosine in pairs:
        of.setdefault(i, []).append((-cosine, digests[j], j))
        of.setdefault(j, []).append((-cosine, digests[i], i))
    best = {k: {m for *_, m in sorted(others)[:partners]} for k, others in of.items()}
    return {(i, j) for i, j, _ in pairs if j in best[i] or i in best[j]}


def test_partners_are_capped_in_dense_groups_and_incremental_runs_agree(tmp_path, searched):
    rng = np.random.default_rng(21)
    vectors = rng.random((400, DIM), dtype=np.float32) ** 3
    for start in (0, 100, 200):  # three groups of 60 near-identical shots
        vectors[start:start + 60] = vectors[start] + 0.05 * rng.random((60, DIM), dtype=np.float32)
    order = rng.permutation(400)
    vectors = vectors[order]
    digests = [f"{k:040x}" for k in rng.permutation(400)]
    threshold = clear_threshold(vectors, 0.95)
    everything = find_pairs(digests, vectors, threshold, block=64, partners=None)
    assert as_set(everything) == brute_force(vectors, threshold)
    # The same cosines (same tiles), so the cap is checked without float noise at its edge.
    few = find_pairs(digests, vectors, threshold, block=64, partners=8)
    assert as_set(few) == capped(digests, everything, 8)
    assert len(few) < len(everything) / 2

    store = tmp_path / STORE_NAME
    find_pairs(digests[:250], vectors[:250], threshold, store, block=64, partners=8)
    same_pairs(find_pairs(digests, vectors, threshold, store, block=64, partners=8), few)
    searched.clear()
    # Another cap is another search; so is none.
    same_pairs(find_pairs(digests, vectors, threshold, store, block=64, partners=None), everything)
    assert searched == [(400, 0), (400, 400)]


def test_an_unwritable_store_still_gives_the_pairs(tmp_path):
    digests, vectors = planted(600, seed=13)
    threshold = clear_threshold(vectors, 0.95)
    expected = find_pairs(digests, vectors, threshold, block=BLOCK)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")  # fails even for root
    warnings: list[str] = []
    for _ in range(2):
        got = find_pairs(digests, vectors, threshold, blocker / STORE_NAME, block=BLOCK, warn=warnings.append)
        same_pairs(got, expected)
    assert len(warnings) == 2 and "cannot store" in warnings[0]
    assert blocker.read_text().startswith("a file")


def test_a_kill_while_writing_keeps_the_previous_store(tmp_path, monkeypatch, searched):
    digests, vectors = planted(800, seed=17)
    threshold = clear_threshold(vectors, 0.95)
    store = tmp_path / STORE_NAME
    find_pairs(digests[:600], vectors[:600], threshold, store, block=BLOCK)
    before = store.read_bytes()

    def killed(*_):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(os, "replace", killed)
        find_pairs(digests, vectors, threshold, store, block=BLOCK)
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [STORE_NAME]
    scratch = find_pairs(digests, vectors, threshold, block=BLOCK)
    searched.clear()
    same_pairs(find_pairs(digests, vectors, threshold, store, block=BLOCK), scratch)
    assert searched == [(200, 600), (200, 200)]


# Real photos, clearly distinct from each other (other sets, other classes), and near-copies made
# as the test makes them.
PHOTOS = [
    sorted((SUPERHEROES / "darth_vader").iterdir())[0],
    sorted((SUPERHEROES / "elsa").iterdir())[0],
    sorted((SHARED / "datasets" / "flowers" / "sunflowers").iterdir())[0],
    sorted((SHARED / "datasets" / "flowers" / "daisy").iterdir())[0],
    sorted((SIGN_DIGITS / "3").iterdir())[0],
]


def near_copy(image: Image.Image, variant: str) -> tuple[Image.Image, str]:
    width, height = image.size
    for step in variant.split("+"):
        if step == "crop2":
            dx, dy = round(width * 0.02), round(height * 0.02)
            image = image.crop((dx, dy, width - dx, height - dy)).resize((width, height), Image.BICUBIC)
        elif step == "bright5":
            image = ImageEnhance.Brightness(image).enhance(1.05)
    return image, "JPEG" if "jpeg75" in variant else "PNG"


def test_real_near_copies_are_found_and_distinct_photos_are_not_joined(tmp_path):
    from tensorguess.data.images import content_hash, read_rgb
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import extract

    paths, source = [], []
    for k, photo in enumerate(PHOTOS):
        paths.append(photo)
        source.append(k)
        image = read_rgb(photo)
        for variant in ("jpeg75", "crop2", "bright5", "crop2+bright5+jpeg75"):
            copy, fmt = near_copy(image, variant)
            path = tmp_path / f"{k}-{variant}.{fmt.lower()}"
            copy.save(path, fmt, **({"quality": 75} if fmt == "JPEG" else {}))
            paths.append(path)
            source.append(k)
    spec, loaded = modules.resolve(str(MOBILENET_V1))
    result = extract(paths, spec, loaded, cache=None)
    vectors = result.matrix(paths)
    pairs = find_pairs([content_hash(p) for p in paths], vectors, DEFAULT_THRESHOLD, tmp_path / STORE_NAME)

    joined = {(i, j) for i, j, _ in pairs}
    assert all(source[i] == source[j] for i, j in joined), "distinct photos joined"
    for k in range(len(PHOTOS)):
        group = [n for n in range(len(paths)) if source[n] == k]
        original = group[0]
        missed = [paths[n].name for n in group[1:] if (original, n) not in joined]
        assert not missed, f"{PHOTOS[k].name}: copies not joined to it: {missed}"


def test_the_automatic_threshold_of_near_identical_features_is_a_cosine_find_pairs_takes():
    """Photos whose features are one vector (a set of near-blank frames): float32 rounding put
    the median cosine, and so the threshold, a step above 1, which find_pairs refused."""
    from tensorguess.checks import data_checks

    rng = np.random.default_rng(0)
    base = rng.random(1024, dtype=np.float32) * 7
    matrix = np.repeat(base[None], 40, axis=0) * rng.uniform(0.5, 3, (40, 1)).astype(np.float32)
    labels = ["a", "b"] * 20
    digests = [f"{k:040x}" for k in range(40)]
    threshold = data_checks.automatic_threshold(matrix, labels, digests)
    assert threshold <= 1.0
    find_pairs(digests, matrix, threshold)
