"""--fine_tune: real MobileNet v1, real superheroes photos, a few of each class, short runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import MOBILENET_V1, SUPERHEROES, train_config

PER_CLASS = 15
LAYERS = "2"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("few_superheroes")
    for folder in sorted(p for p in SUPERHEROES.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for photo in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, root / folder.name / photo.name)
    return root


@pytest.fixture(scope="module")
def prepared(small_set, tmp_path_factory):
    """The splits, their digests and a head trained on bottlenecks: what retrain.py hands over."""
    from tensorguess.data import dataset
    from tensorguess.features import bottlenecks, modules
    from tensorguess.head.train import Rows, Schedule, train_head

    spec, loaded = modules.resolve(str(MOBILENET_V1))
    cache = bottlenecks.BottleneckCache(tmp_path_factory.mktemp("bottlenecks"), spec)
    image_set = dataset.discover(small_set)
    paths = [p for label in image_set.labels for p in image_set.files[label]]
    extraction = bottlenecks.extract(paths, spec, loaded, cache, 16)
    split = dataset.split(image_set, image_set.files, 20, 20)
    train, validation = split.files("training"), split.files("validation")
    layer, _ = train_head(Rows(extraction.matrix(train[0]), train[1]),
                          Rows(extraction.matrix(validation[0]), validation[1]), len(image_set.labels),
                          Schedule(100, 0.01, 100, -1, 50, seed=3))
    return {"spec": spec, "train": train, "validation": validation, "testing": split.files("testing"),
            "digests": extraction.digests, "layer": layer, "labels": image_set.labels}


def run_fine_tune(prepared, folder, epochs=2, after_epoch=lambda epoch: None, learning_rate=1e-4):
    """fine_tune() on a freshly loaded module (its variables are changed in place)."""
    from tensorguess.features import modules
    from tensorguess.features.augment import Recipe
    from tensorguess.head.fine_tune import FineTuneSettings, fine_tune

    _, loaded = modules.resolve(str(MOBILENET_V1))
    lines: list[str] = []
    settings = FineTuneSettings(LAYERS, epochs, learning_rate, 8)
    network, log = fine_tune(prepared["spec"], loaded, prepared["layer"], prepared["train"],
                             prepared["validation"], prepared["digests"], Recipe(), settings, 11, folder,
                             lines.append, lines.append, after_epoch=after_epoch)
    return loaded, network, log, lines


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory):
    return run_fine_tune(prepared, tmp_path_factory.mktemp("run"))


def test_fine_tuning_changes_only_the_chosen_layers_and_keeps_the_best_epoch(prepared, uninterrupted):
    from tensorguess.features import modules
    from tensorguess.head.fine_tune import Epoch, _validate, best_epoch

    loaded, network, log, _ = uninterrupted
    _, fresh = modules.resolve(str(MOBILENET_V1))
    chosen = {v.name for v in network.module_variables}
    assert len(chosen) == 2 * int(LAYERS)  # a kernel and a bias per layer
    for before, after in zip(fresh.trainable_variables, loaded.trainable_variables, strict=True):
        moved = float(np.abs(before.numpy() - after.numpy()).max())
        assert (moved > 0) == (after.name in chosen), after.name
    assert log["layers"] == [name.rsplit("/", 1)[0] for name in sorted(chosen)][::2]
    assert [e["epoch"] for e in log["history"]] == [1, 2]
    best = best_epoch([Epoch(**e) for e in log["history"]]).as_json()
    assert best == min(log["history"], key=lambda e: (-e["validation_accuracy"], e["validation_loss"]))
    assert log["chosen_epoch"] == best["epoch"]
    # The weights left in place are that epoch's: they score the validation split as it did.
    accuracy, loss = _validate(network, *prepared["validation"], 8)
    assert accuracy == pytest.approx(best["validation_accuracy"], abs=1e-6)
    assert loss == pytest.approx(best["validation_loss"], abs=1e-5)
    assert log["images_per_second"] > 0 and log["resumed_at_epoch"] is None


def test_the_exported_graph_is_the_fine_tuned_network(prepared, uninterrupted, tmp_path):
    from tensorguess.export import frozen
    from tensorguess.features import modules
    from tensorguess.head.fine_tune import network_features
    from tensorguess.metrics import softmax
    from tensorguess.score.predict import Classifier

    loaded, network, _, _ = uninterrupted
    spec, labels = prepared["spec"], prepared["labels"]
    photos = prepared["testing"][0][:3]
    layer = network.final_layer()
    frozen.export(spec, loaded, layer, labels, tmp_path / "fine.pb", tmp_path / "labels.txt", None,
                  "final_result")
    expected = softmax(layer.logits(network_features(network, photos, 8)))
    with Classifier(tmp_path / "fine.pb", tmp_path / "labels.txt") as classifier:
        scored = list(classifier.score_files(photos))
    got = np.array([s.scores for s in scored])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # And by the classic tf.compat.v1 recipe, raw JPEG bytes in, as label_image.py runs it; against
    # the network on TensorFlow's decoding of the bytes (Pillow's differs by up to about 5e-3 of
    # a score: test_workflow.py), as the graph decodes them.
    import tensorflow as tf

    from tensorguess.features.modules import resize_image

    pixels = [resize_image(frozen.decode_to_rgb(tf.constant(p.read_bytes())), spec.input_size)
              for p in photos]
    same = softmax(layer.logits(network.features(tf.stack(pixels)).numpy()))
    graph_def = tf.compat.v1.GraphDef.FromString((tmp_path / "fine.pb").read_bytes())
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        tf.compat.v1.import_graph_def(graph_def, name="")
        classic = [session.run("final_result:0", {"DecodeJpeg/contents:0": p.read_bytes()})[0]
                   for p in photos]
    np.testing.assert_allclose(np.array(classic), same, atol=1e-5)
    # The same head on the module as it was scores differently: the graph carries the new weights.
    _, fresh = modules.resolve(str(MOBILENET_V1))
    frozen.export(spec, fresh, layer, labels, tmp_path / "frozen.pb", tmp_path / "labels.txt", None,
                  "final_result")
    with Classifier(tmp_path / "frozen.pb", tmp_path / "labels.txt") as classifier:
        before = np.array([s.scores for s in classifier.score_files(photos)])
    assert np.abs(before - got).max() > 1e-4


def test_a_run_killed_after_epoch_1_resumes_at_epoch_2_and_ends_with_the_same_weights(
        prepared, uninterrupted, tmp_path):
    class Killed(Exception):
        pass

    def kill_after_first(epoch):
        if epoch.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        run_fine_tune(prepared, tmp_path, after_epoch=kill_after_first)
    state = json.loads((tmp_path / "fine_tune_checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1
    _, network, log, lines = run_fine_tune(prepared, tmp_path)
    assert any("resuming from the checkpoint" in line and "after epoch 1" in line for line in lines)
    assert log["resumed_at_epoch"] == 2
    assert [e["epoch"] for e in log["history"]] == [1, 2]
    reference = uninterrupted[1]
    for resumed, straight in zip(network.trained, reference.trained, strict=True):
        np.testing.assert_allclose(resumed.numpy(), straight.numpy(), atol=1e-6, err_msg=resumed.name)
    assert not (tmp_path / "fine_tune_checkpoint").exists()  # removed once the run is done


def test_a_checkpoint_of_other_settings_is_ignored_with_one_line(prepared, tmp_path):
    folder = tmp_path / "fine_tune_checkpoint"
    folder.mkdir()
    (folder / "state.json").write_text(json.dumps({"fingerprint": "other", "epoch": 1, "prefix": "epoch-1",
                                                   "history": []}))
    _, _, log, lines = run_fine_tune(prepared, tmp_path, epochs=1)
    ignored = [line for line in lines if "ignored the checkpoint" in line]
    assert len(ignored) == 1 and "other settings or photos" in ignored[0]
    assert log["resumed_at_epoch"] is None and len(log["history"]) == 1


def test_train_with_fine_tune_logs_it_and_keeps_the_cache_clean(small_set, tmp_path):
    from tensorguess.features import bottlenecks, modules
    from tensorguess.retrain import retrain

    cfg = train_config(tmp_path, small_set, how_many_training_steps=100, eval_step_interval=50,
                       testing_percentage=20, validation_percentage=20, fine_tune=True,
                       fine_tune_layers="1", fine_tune_epochs=1, fine_tune_batch_size=8,
                       hidden_units=16, optimizer="adam", learning_rate=0.001)  # a hidden layer too
    lines: list[str] = []
    log = retrain(cfg, say=lines.append, warn=lines.append)
    entry = log["fine_tune"]
    assert len(entry["layers"]) == 1 and entry["chosen_epoch"] == 1 and len(entry["history"]) == 1
    assert json.loads(cfg.train_log.read_text())["fine_tune"]["layers"] == entry["layers"]
    assert any(line.startswith("Fine-tuning epoch 1:") for line in lines)
    assert "Fine-tuning" in (cfg.report_dir / "report.html").read_text()
    assert not (tmp_path / "fine_tune_checkpoint").exists()
    # The exported graph (with its hidden layer) scores the test photos as the run's report did.
    from tensorguess.data.images import content_hash
    from tensorguess.score.predict import Classifier

    testing = set(log["split_digests"]["testing"])
    photos = [p for p in sorted(small_set.glob("*/*.jpg")) if content_hash(p) in testing]
    with Classifier(cfg.output_graph, cfg.output_labels) as classifier:
        scored = list(classifier.score_files(photos))
    right = [log["labels"][int(np.argmax(s.scores))] == p.parent.name.replace("_", " ")
             for s, p in zip(scored, photos, strict=True)]
    assert len(photos) == log["test_n"] and np.mean(right) == pytest.approx(log["final_test_accuracy"])
    # The cache holds the photos' own bottlenecks only, those of the module as it is on disk.
    spec, fresh = modules.resolve(str(MOBILENET_V1))
    cache = bottlenecks.BottleneckCache(cfg.bottleneck_dir, spec)
    stored = cache.store.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    photos = sorted(small_set.glob("*/*.jpg"))
    extraction = bottlenecks.extract(photos, spec, fresh, None, 16)
    assert stored == len(set(extraction.digests.values()))
    digests = sorted(set(extraction.digests.values()))
    vectors = np.zeros((len(digests), extraction.features.shape[1]), np.float32)
    assert cache.store.read_into(digests, vectors).all()
    first_photo = {}
    for photo in photos:
        first_photo.setdefault(extraction.digests[photo], photo)
    np.testing.assert_allclose(vectors, extraction.matrix([first_photo[d] for d in digests]), atol=1e-5)


@pytest.mark.parametrize("flag, value, says", [
    ("--fine_tune_layers", "0", "--fine_tune_layers must be a number of layers of at least 1, or all"),
    ("--fine_tune_layers", "last", "--fine_tune_layers must be"),
    ("--fine_tune_learning_rate", "0", "--fine_tune_learning_rate must be a number above 0"),
    ("--fine_tune_epochs", "0", "--fine_tune_epochs must be between 1 and 10000"),
    ("--fine_tune_batch_size", "0", "--fine_tune_batch_size must be between 1 and 10000"),
])
def test_bad_fine_tune_flags_are_one_line(tmp_path, capsys, flag, value, says):
    from tensorguess import cli

    assert cli.main(["train", str(tmp_path), "--fine_tune", flag, value]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err


def test_a_fine_tuning_flag_without_fine_tune_is_one_line(tmp_path, capsys):
    from tensorguess import cli

    assert cli.main(["train", str(tmp_path), "--fine_tune_epochs", "5"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == ("tensor-guess: --fine_tune_epochs is a setting of --fine_tune: add --fine_tune, "
                   "or leave it out")


def test_more_layers_than_the_module_has_is_one_line_naming_the_flag():
    from tensorguess.features import modules
    from tensorguess.head.fine_tune import FineTuneError, chosen_layers

    _, loaded = modules.resolve(str(MOBILENET_V1))
    assert len(chosen_layers(loaded, "all")) == 27  # MobileNet v1: 27 convolutions
    with pytest.raises(FineTuneError, match=r"^--fine_tune_layers 99 is more than the module's 27 layers"):
        chosen_layers(loaded, "99")


def test_train_killed_during_fine_tuning_resumes_when_run_again(small_set, tmp_path):
    """The real thing: train.sh's command killed (SIGKILL) after an epoch, then run again, with
    no --random_seed (the second run takes the first one's from the checkpoint)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    command = [sys.executable, "-m", "tensorguess", "train", str(tmp_path), "--image_dir", str(small_set),
               "--tfhub_module", str(MOBILENET_V1), "--how_many_training_steps", "100",
               "--testing_percentage", "20", "--validation_percentage", "20", "--fine_tune",
               "--fine_tune_layers", "1", "--fine_tune_epochs", "3", "--fine_tune_batch_size", "8"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    state = tmp_path / "fine_tune_checkpoint" / "state.json"
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        while not state.exists() and first.poll() is None:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait()
    assert first.returncode == -signal.SIGKILL, first.stdout.read().decode()[-2000:]
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 3
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming from the checkpoint in {state.parent} after epoch {done}" in second.stdout
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["fine_tune"]["resumed_at_epoch"] == done + 1
    assert [e["epoch"] for e in log["fine_tune"]["history"]] == list(range(1, 4))
    assert not state.parent.exists()


def test_fine_tuning_a_logit_adjusted_head_keeps_its_offsets(prepared, tmp_path):
    """The adjusted head (balance.py's offsets in its biases) is fine-tuned as the head was trained,
    on the photos' own priors, and decides adjusted afterwards: the same network as fine-tuning the
    unadjusted head, plus the offsets. Left in the training loss, the offsets were learned away."""
    from tensorguess.features import modules
    from tensorguess.features.augment import Recipe
    from tensorguess.head.fine_tune import FineTuneSettings, fine_tune
    from tensorguess.head.train import FinalLayer

    raw = prepared["layer"]
    offsets = np.linspace(-2.0, 2.0, len(prepared["labels"])).astype(np.float32)
    adjusted = FinalLayer(raw.weights, raw.biases + offsets)
    # A learning rate that moves the biases within one epoch, so that a loss that sees the offsets shows.
    settings = FineTuneSettings("1", 1, 1e-2, 8)
    ends = []
    for name, layer, given in (("raw", raw, None), ("adjusted", adjusted, offsets)):
        _, loaded = modules.resolve(str(MOBILENET_V1))
        network, _ = fine_tune(prepared["spec"], loaded, layer, prepared["train"], prepared["validation"],
                               prepared["digests"], Recipe(), settings, 11, tmp_path / name,
                               lambda line: None, lambda line: None, offsets=given)
        ends.append(network.final_layer())
    plain, kept = ends
    assert np.abs(plain.biases - raw.biases).max() > 1e-3  # the fine-tuning did move the biases
    np.testing.assert_allclose(kept.biases, plain.biases + offsets, atol=1e-4)
    np.testing.assert_allclose(kept.weights, plain.weights, atol=1e-4)
