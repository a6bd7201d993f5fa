"""Long tails: the default head learns a class of 3 photos beside classes of 40; retrain.py's
class-uniform head (the default before issue 23, --class_weights none) never recognises it.

Real flowers photos through the real MobileNet v1 module; the head is trained exactly as
retrain._train trains it (balance() of the config's --class_weights, the config's schedule).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MOBILENET_V1, SHARED

from tensorguess.config import TrainConfig
from tensorguess.head.balance import balance
from tensorguess.head.train import Rows, Schedule, train_head

FLOWERS = SHARED / "datasets" / "flowers"
# Training photos per class: three of 40, two of 3 (the tail, from the 31st photo of the folder
# on); each judged on the folder's last TESTED photos.
TAIL = {"daisy": 40, "dandelion": 40, "roses": 40, "sunflowers": 3, "tulips": 3}
TAIL_FROM, VALIDATION, TESTED = 30, 2, 15


@pytest.fixture(scope="module")
def tail(tmp_path_factory):
    """(training, validation, testing) Rows of the real photos' bottlenecks."""
    from tensorguess.data.images import list_files
    from tensorguess.features import modules
    from tensorguess.features.bottlenecks import BottleneckCache, extract

    spec, loaded = modules.resolve(str(MOBILENET_V1))
    parts = {"training": [], "validation": [], "testing": []}
    for label, (name, count) in enumerate(TAIL.items()):
        files = list_files(FLOWERS / name)
        # Each part from its own stretch of the sorted folder, never the same photo twice.
        first = TAIL_FROM if count < 10 else 0
        chosen = {"training": files[first:first + count],
                  "validation": files[first + count:first + count + VALIDATION], "testing": files[-TESTED:]}
        for part, paths in chosen.items():
            parts[part] += [(path, label) for path in paths]
    extraction = extract([path for rows in parts.values() for path, _ in rows], spec, loaded,
                         BottleneckCache(tmp_path_factory.mktemp("bottlenecks"), spec))
    return {part: Rows(extraction.matrix([path for path, _ in rows]),
                       np.array([label for _, label in rows], np.int64)) for part, rows in parts.items()}


def recalls(tail, class_weights: str | None = None) -> tuple[np.ndarray, list]:
    """Each class's test recall of the head --class_weights trains (None: the default), and its
    evaluations."""
    cfg = TrainConfig() if class_weights is None else TrainConfig(class_weights=class_weights)
    training, validation, testing = tail["training"], tail["validation"], tail["testing"]
    chosen = balance(cfg.class_weights, training.truth, len(TAIL))
    schedule = Schedule(cfg.how_many_training_steps, cfg.learning_rate, cfg.train_batch_size, -1,
                        cfg.how_many_training_steps // 4, seed=1)
    layer, history = train_head(training, validation, len(TAIL), schedule,
                                class_weights=chosen.weights, logit_offsets=chosen.offsets)
    predicted = layer.logits(testing.matrix).argmax(axis=1)
    validated = np.mean(layer.logits(validation.matrix).argmax(axis=1) == validation.truth)
    return (np.array([np.mean(predicted[testing.truth == k] == k) for k in range(len(TAIL))]),
            [history, validated])


def test_the_default_head_learns_every_class_of_a_long_tail(tail):
    old, _ = recalls(tail, "none")
    assert old.min() == 0, f"retrain.py's head should miss a tail class here: {old}"
    new, (history, validated) = recalls(tail)
    assert new.min() > 0.2, f"a class with 3 training photos is still drowned: {new}"
    assert new.mean() > old.mean() + 0.1
    # The adjustment is in the layer itself: what was validated is what the layer decides.
    assert history[-1].validation_accuracy == pytest.approx(validated)


def test_the_adjustments_strength_is_chosen_on_the_training_folds_alone(tail):
    """--recipe_mode auto picks tau from the training photos' out-of-fold logits: the same choice
    whatever the other photos' features say (here the test photos' rows, scrambled)."""
    from tensorguess.head.recipe_choice import TAUS, choose

    training, testing = tail["training"], tail["testing"]
    matrix = np.concatenate([training.matrix, testing.matrix])
    rows = np.arange(len(training.truth))
    # Short folds: the choice is what is tested.
    cfg = TrainConfig(how_many_training_steps=200)
    choice = choose(cfg, matrix, rows, training.truth, len(TAIL), seed=1)
    scrambled = matrix.copy()
    scrambled[len(rows):] = np.random.default_rng(0).permutation(scrambled[len(rows):].ravel()).reshape(
        testing.matrix.shape)
    again = choose(cfg, scrambled, rows, training.truth, len(TAIL), seed=1)

    adjusted = [c for c in choice.log["candidates"] if c["tau"] is not None]
    assert adjusted and all(c["tau"] in TAUS for c in adjusted)  # the tail is adjusted, tau chosen
    without_time = [{k: v for k, v in c.items() if k != "seconds"} for c in choice.log["candidates"]]
    assert without_time == [{k: v for k, v in c.items() if k != "seconds"} for c in again.log["candidates"]]
    assert (choice.log["chosen"], choice.log["tau"]) == (again.log["chosen"], again.log["tau"])
    # What the run then trains with is the chosen tau (balance.py's default where none was chosen).
    assert choice.tau == (choice.log["tau"] if choice.log["tau"] is not None else 1.5)
    assert "budget:" in choice.line
