"""train -> guess -> guessDir end to end on real photos with a real MobileNet."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_V1, MOBILENET_V2, SUPERHEROES, train_config
from PIL import Image

from tensorguess.score.predict import Classifier
from tensorguess.sort.folder import MANIFEST, score_digits, sort


def some_photos(label_folder: str, count: int) -> list[Path]:
    return sorted((SUPERHEROES / label_folder).iterdir())[:count]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_training_reaches_95_percent_and_writes_every_output(trained):
    base, log, lines = trained
    assert log["final_test_accuracy"] >= 0.95
    assert f"Final test accuracy = {log['final_test_accuracy'] * 100:.1f}% (N={log['test_n']})" in lines
    assert (base / "retrained_labels.txt").read_text() == "darth vader\nelsa\n"
    assert (base / "retrained_graph.pb").stat().st_size > 1_000_000
    assert (base / "saved_model" / "saved_model.pb").is_file()
    written = json.loads((base / "train_log.json").read_text())
    assert written["final_test_accuracy"] == log["final_test_accuracy"]
    assert sum(written["split_sizes"].values()) == 383
    assert written["flags"]["random_seed"] == 7
    assert written["steps"][0]["step"] == 0 and written["steps"][-1]["step"] == 999
    for per_class in written["split_sizes_per_class"].values():
        assert set(per_class) == {"darth vader", "elsa"} and min(per_class.values()) >= 1
    assert any("Step 0: Train accuracy" in line for line in lines)


def test_second_run_computes_no_bottleneck(trained, tmp_path):
    from tensorguess.retrain import retrain

    base, first, _ = trained
    assert first["bottlenecks"]["computed"] > 0
    cfg = train_config(tmp_path, SUPERHEROES, bottleneck_dir=base / "bottlenecks",
                       how_many_training_steps=20)
    lines: list[str] = []
    log = retrain(cfg, say=lines.append, warn=lines.append)
    assert log["bottlenecks"]["computed"] == 0
    assert log["bottlenecks"]["from_cache"] == 383
    assert "Bottlenecks: 0 computed, 383 read from cache" in lines


def test_frozen_graph_runs_the_classic_tf1_recipe_on_jpeg_and_png_bytes(trained):
    import tensorflow as tf

    base, _, _ = trained
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((base / "retrained_graph.pb").read_bytes())
    labels = (base / "retrained_labels.txt").read_text().splitlines()
    elsa = some_photos("elsa", 3)
    png = io.BytesIO()
    Image.open(elsa[0]).save(png, "PNG")
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            from_jpeg = session.run("final_result:0", {"DecodeJpeg/contents:0": elsa[0].read_bytes()})
            from_png = session.run("final_result:0", {"DecodeJpeg/contents:0": png.getvalue()})
    assert from_jpeg.shape == (1, 2) and from_png.shape == (1, 2)
    assert labels[int(from_jpeg.argmax())] == "elsa" and labels[int(from_png.argmax())] == "elsa"
    assert np.allclose(from_jpeg.sum(), 1.0, atol=1e-5)
    # Lossless re-encoding: the bytes path gives the same scores for both formats, up to
    # TensorFlow's and Pillow's JPEG decoders differing a little (about 2e-3 of score before
    # temperature scaling; the calibrated scores sit less close to 1, where that moves them more).
    assert np.allclose(from_jpeg, from_png, atol=5e-3)
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        (batched,) = list(classifier.score_files([elsa[0]]))
    assert np.allclose(batched.scores, from_jpeg[0], atol=5e-3)


def test_saved_model_gives_the_graph_scores(trained):
    import tensorflow as tf

    base, _, _ = trained
    photo = some_photos("darth_vader", 1)[0]
    model = tf.saved_model.load(str(base / "saved_model"))
    scores = model.signatures["serving_default"](image_bytes=tf.constant(photo.read_bytes()))["scores"]
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        (expected,) = list(classifier.score_files([photo]))
    assert np.allclose(scores.numpy()[0], expected.scores, atol=2e-3)


def test_guess_ranks_every_label_best_first(trained):
    base, _, _ = trained
    photos = some_photos("darth_vader", 2) + some_photos("elsa", 2)
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        results = list(classifier.score_files(photos, batch_size=3))
        ranked = [classifier.ranked(r.scores) for r in results]
    assert [r.path for r in results] == photos
    assert [r[0][0] for r in ranked] == ["darth vader", "darth vader", "elsa", "elsa"]
    for labels_scores in ranked:
        scores = [s for _, s in labels_scores]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4


def test_guessdir_copies_never_overwrites_and_logs_unreadable_files(trained, tmp_path):
    base, _, _ = trained
    source = tmp_path / "in"
    source.mkdir()
    photo = some_photos("elsa", 1)[0]
    shutil.copy(photo, source / "one.jpg")
    shutil.copy(photo, source / "same_photo_again.JPG")  # same label and score: a name collision
    Image.open(photo).save(source / "as_png.png")
    shutil.copy(some_photos("darth_vader", 1)[0], source / "vader")  # no extension
    (source / "broken.jpg").write_bytes(photo.read_bytes()[:200])
    (source / "notes.txt").write_text("not a photo")
    (source / ".hidden.jpg").write_bytes(photo.read_bytes())
    before = tree_digest(source)
    dest = tmp_path / "out" / "sorted"
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        stem = f"elsa--{score_digits(classifier.ranked(next(classifier.score_files([photo])).scores)[0][1])}"
        dest.mkdir(parents=True)
        (dest / f"{stem}.jpg").write_bytes(b"a file the user already had")
        summary = sort(classifier, source, dest, batch_size=2, warn=lambda line: None)

    assert tree_digest(source) == before, "the source folder must be left untouched"
    assert (dest / f"{stem}.jpg").read_bytes() == b"a file the user already had"
    entries = [json.loads(line) for line in (dest / MANIFEST).read_text().splitlines()]
    assert sorted(e["source"] for e in entries) == [
        "as_png.png", "broken.jpg", "notes.txt", "one.jpg", "same_photo_again.JPG", "vader"
    ], "one line per source file, hidden files ignored"
    errors = {e["source"]: e["error"] for e in entries if "error" in e}
    assert set(errors) == {"broken.jpg", "notes.txt"}
    copies = {e["source"]: e for e in entries if "copy" in e}
    assert copies["one.jpg"]["copy"] == f"{stem} (2).jpg"
    assert copies["same_photo_again.JPG"]["copy"] == f"{stem}.JPG", "the source's own extension"
    assert copies["vader"]["copy"].startswith("darth vader--") and "." not in copies["vader"]["copy"]
    assert copies["as_png.png"]["copy"].endswith(".png")
    for name, entry in copies.items():
        assert (dest / entry["copy"]).read_bytes() == (source / name).read_bytes()
        assert entry["label"] == max(entry["scores"], key=entry["scores"].get)
    assert summary.copied == 4 and summary.unreadable == 2


@pytest.mark.parametrize(
    ("score", "digits"),
    [(0.883319, "88331"), (1.0, "99999"), (0.99636, "99636"), (0.29, "29000"), (0.0, "00000"),
     (0.000012, "00001"), (0.5, "50000")],
)
def test_score_digits_truncate_to_five_decimals(score, digits):
    assert score_digits(score) == digits


def test_changed_module_recomputes_and_damaged_entries_are_not_read(tmp_path):
    from tensorguess.features import bottlenecks, modules

    photos = some_photos("elsa", 4)
    spec1, loaded1 = modules.resolve(str(MOBILENET_V1))
    cache1 = bottlenecks.BottleneckCache(tmp_path, spec1)
    first = bottlenecks.extract(photos, spec1, loaded1, cache1)
    assert first.computed == 4
    spec2, loaded2 = modules.resolve(str(MOBILENET_V2))
    assert spec2.cache_name != spec1.cache_name
    second = bottlenecks.extract(photos, spec2, loaded2, bottlenecks.BottleneckCache(tmp_path, spec2))
    assert second.computed == 4 and second.from_cache == 0
    assert second.features.shape[1] == 1280
    # A damaged entry (written by another tool: the store never writes a part of one) is
    # recomputed, not read back.
    import sqlite3

    with sqlite3.connect(cache1.dir / "features.sqlite") as db:
        db.execute("UPDATE vectors SET vector = substr(vector, 1, 40) WHERE rowid = 1")
    third = bottlenecks.extract(photos, spec1, loaded1, cache1)
    assert third.computed == 1 and third.from_cache == 3
    for path in photos:
        assert np.allclose(third.vector(path), first.vector(path), atol=1e-5)


def test_training_is_deterministic_for_a_seed():
    from tensorguess.head.train import Rows, Schedule, train_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 16)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)

    def run(seed):
        layer, history = train_head(Rows(x, y), Rows(x[:10], y[:10]), 2, Schedule(50, 0.1, 20, 10, 10, seed))
        return layer, history

    a, history_a = run(3)
    b, history_b = run(3)
    c, _ = run(4)
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.biases, b.biases)
    assert [p.as_json() for p in history_a] == [p.as_json() for p in history_b]
    assert not np.array_equal(a.weights, c.weights)
