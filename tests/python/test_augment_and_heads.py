"""Augmentation kept in the cache, retrain.py's distortion flags, and the head's choices."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest
from conftest import MOBILENET_V1, SUPERHEROES, train_config

from tensorguess.cli import build_parser
from tensorguess.commands.train import train_config as cli_config
from tensorguess.config import TrainConfig
from tensorguess.errors import UsageError
from tensorguess.features import augment
from tensorguess.features.modules import resolve
from tensorguess.features.pipeline import network_batch, prepare_for_network
from tensorguess.features.store import FILE
from tensorguess.head.train import HeadSpec, Rows, Schedule, train_head
from tensorguess.retrain import retrain


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """12 photos of each superhero: a split of 8 / 2 / 2 or so, trained in seconds."""
    root = tmp_path_factory.mktemp("photos")
    for label in ("elsa", "darth_vader"):
        (root / label).mkdir()
        for photo in sorted((SUPERHEROES / label).iterdir())[:12]:
            shutil.copy(photo, root / label / photo.name)
    return root


def stored_keys(base) -> set[str]:
    spec, _ = resolve(str(MOBILENET_V1))
    with sqlite3.connect(base / "bottlenecks" / spec.cache_name / FILE) as db:
        return {row[0] for row in db.execute("SELECT digest FROM vectors")}


def test_a_variant_is_a_pure_function_of_content_number_and_recipe():
    image = network_batch([prepare_for_network(sorted((SUPERHEROES / "elsa").iterdir())[0], 224)], 224)
    recipe = augment.Recipe(cutout=30)
    keys = [augment.variant_key(recipe.identity(), "d" * 40, v) for v in (1, 2)]
    first = augment.distort(np.repeat(image, 2, 0), [augment.parameters(recipe, k, 224) for k in keys])
    again = augment.distort(np.repeat(image, 2, 0), [augment.parameters(recipe, k, 224) for k in keys])
    np.testing.assert_array_equal(first, again)
    assert first.shape == (2, 224, 224, 3) and 0 <= first.min() and first.max() <= 1
    assert np.abs(first[0] - first[1]).mean() > 0.02  # two variants differ
    assert np.abs(first[0] - image[0]).mean() > 0.02  # and neither is the photo
    # The key names the recipe: another strength is another variant.
    assert augment.variant_key(augment.Recipe(cutout=20).identity(), "d" * 40, 1) != keys[0]
    nothing = augment.distort(image, [augment.parameters(augment.Recipe.off(), keys[0], 224)])
    np.testing.assert_allclose(nothing, image, atol=1e-4)  # every strength 0: the photo, up to rounding


def test_variants_are_cached_only_for_training_photos_and_more_cost_only_the_new_ones(small_set, tmp_path):
    lines: list[str] = []
    cfg = train_config(tmp_path, small_set, augment=2, how_many_training_steps=50, eval_step_interval=25)
    log = retrain(cfg, say=lines.append, warn=lines.append)
    training = log["split_digests"]["training"]
    identity = augment.Recipe().identity()
    assert log["augmentation"]["computed"] == 2 * len(training) and log["augmentation"]["from_cache"] == 0
    assert log["augmentation"]["training_rows"] == 3 * log["split_sizes"]["training"]
    variants = {k for k in stored_keys(tmp_path) if k.startswith("aug-")}
    assert variants == {augment.variant_key(identity, d, v) for d in training for v in (1, 2)}
    again = retrain(cfg, say=lines.append, warn=lines.append)
    assert again["augmentation"]["computed"] == 0 and again["augmentation"]["from_cache"] == 2 * len(training)
    cfg.augment = 3
    more = retrain(cfg, say=lines.append, warn=lines.append)
    assert more["augmentation"]["computed"] == len(training)  # variant 3 of each, nothing else
    assert more["augmentation"]["from_cache"] == 2 * len(training)
    assert any(line.startswith("Augmentation: 3 variant(s) of each of") for line in lines)
    saved = json.loads(cfg.train_log.read_text())
    assert saved["augmentation"]["recipe"] == identity


def test_retrain_py_distortion_flags_turn_on_only_their_own_distortions(tmp_path):
    def parsed(*flags):
        return cli_config(build_parser().parse_args(["train", str(tmp_path), *flags]))

    legacy = parsed("--flip_left_right", "--random_crop", "10")
    assert legacy.variants() == 10
    assert legacy.recipe() == augment.Recipe(**{**vars(augment.Recipe.off()), "flip": 50.0, "crop": 10.0})
    assert parsed("--flip_left_right", "--augment", "0").variants() == 0
    mixed = parsed("--random_brightness", "30", "--augment_rotation", "5", "--augment", "4")
    assert mixed.variants() == 4
    assert mixed.recipe() == augment.Recipe(**{**vars(augment.Recipe.off()), "brightness": 30.0,
                                               "rotation": 5.0})
    assert parsed().variants() == 0 and parsed("--augment", "3").recipe() == augment.Recipe()
    assert parsed("--augment", "1", "--augment_noise", "0").recipe().noise == 0


@pytest.mark.parametrize("flags, named", [
    (["--augment", "-1"], "--augment"), (["--augment_crop", "95"], "--augment_crop"),
    (["--augment_rotation", "nan"], "--augment_rotation"), (["--random_scale", "101"], "--random_scale"),
    (["--hidden_units", "-3"], "--hidden_units"), (["--dropout_rate", "1"], "--dropout_rate"),
    (["--label_smoothing", "-0.1"], "--label_smoothing"), (["--weight_decay", "inf"], "--weight_decay"),
])
def test_bad_augmentation_and_head_settings_are_one_line_naming_the_flag(tmp_path, flags, named):
    with pytest.raises(UsageError, match=f"^{named} must be"):
        cli_config(build_parser().parse_args(["train", str(tmp_path), *flags]))


def test_the_head_choices_all_learn_a_separable_problem():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 32)).astype(np.float32) * 3
    y = rng.integers(0, 3, 600)
    x = (centres[y] + rng.standard_normal((600, 32))).astype(np.float32)
    for head in (HeadSpec(), HeadSpec(optimizer="momentum"), HeadSpec(optimizer="adam", weight_decay=1e-4),
                 HeadSpec(hidden_units=16, dropout_rate=0.3, label_smoothing=0.1, optimizer="adam")):
        rate = 0.01 if head.optimizer == "adam" else 0.1
        layer, history = train_head(Rows(x[:500], y[:500]), Rows(x[500:], y[500:]), 3,
                                    Schedule(300, rate, 50, -1, 100, 1), head=head)
        assert history[-1].validation_accuracy > 0.95, head
        assert (layer.hidden_weights is not None) == bool(head.hidden_units)
        accuracy = np.mean(layer.probabilities(x[500:]).argmax(1) == y[500:])
        assert accuracy == pytest.approx(history[-1].validation_accuracy, abs=1e-6)


def test_a_hidden_layer_is_exported_and_scores_as_trained(small_set, tmp_path):
    from tensorguess.score.predict import Classifier

    cfg = train_config(tmp_path, small_set, hidden_units=32, dropout_rate=0.2, optimizer="adam",
                       learning_rate=0.001, how_many_training_steps=100, calibrate="on")
    log = retrain(cfg, say=lambda line: None, warn=lambda line: None)
    assert log["head"] == "32 ReLU units + softmax, adam, dropout rate 0.2"
    photos = sorted(small_set.rglob("*.jpg"))[:6]
    with Classifier(cfg.output_graph, cfg.output_labels) as classifier:
        scored = list(classifier.score_files(photos, with_features=True))
        graph_def = classifier.graph.as_graph_def()
    assert {"final_training_ops/hidden"} <= {node.name for node in graph_def.node}
    weights = {node.name: node for node in graph_def.node}
    assert weights["final_training_ops/hidden_weights"].attr["value"].tensor.tensor_shape.dim[1].size == 32
    for result in scored:
        logits = np.maximum(result.features @ _const(graph_def, "hidden_weights")
                            + _const(graph_def, "hidden_biases"), 0) @ _const(graph_def, "weights") \
            + _const(graph_def, "biases")
        temperature = float(_const(graph_def, "temperature"))
        expected = np.exp(logits / temperature - np.max(logits / temperature))
        np.testing.assert_allclose(result.scores, expected / expected.sum(), atol=1e-5)


def _const(graph_def, name: str) -> np.ndarray:
    import tensorflow as tf

    node = next(n for n in graph_def.node if n.name == f"final_training_ops/{name}")
    return tf.make_ndarray(node.attr["value"].tensor)


def test_the_default_settings_are_retrain_py_s_head_with_no_augmentation():
    cfg = TrainConfig()
    assert cfg.head() == HeadSpec() and cfg.variants() == 0
    assert cfg.head().describe() == "softmax, sgd"


def test_tta_scores_each_photo_as_the_mean_over_its_six_views(small_set, tmp_path, capsys):
    from tensorguess.cli import main
    from tensorguess.score import tta
    from tensorguess.score.predict import Classifier

    cfg = train_config(tmp_path, small_set, how_many_training_steps=100)
    retrain(cfg, say=lambda line: None, warn=lambda line: None)
    photo = sorted((small_set / "elsa").iterdir())[0]
    pixels = network_batch([prepare_for_network(photo, 224)], 224)
    views = tta.views(pixels)
    assert views.shape == (6, 224, 224, 3)
    np.testing.assert_array_equal(views[1], pixels[0, :, ::-1])  # the mirror image
    with Classifier(cfg.output_graph, cfg.output_labels) as plain:
        per_view, _ = plain._run(views)
        alone = next(plain.score_files([photo])).scores
    with Classifier(cfg.output_graph, cfg.output_labels, tta=True) as augmented:
        scored = next(augmented.score_files([photo], with_features=True))
    np.testing.assert_allclose(scored.scores, per_view.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(per_view[0], alone, atol=1e-6)
    assert not np.allclose(scored.scores, alone, atol=1e-4) and scored.features.shape == (1024,)
    assert main(["guess", str(tmp_path), str(photo), "--json", "--tta"]) == 0
    (document,) = json.loads(capsys.readouterr().out)
    assert document["score"] == pytest.approx(float(scored.scores.max()), abs=1e-6)
    assert document["label"] == augmented.labels[int(scored.scores.argmax())]
