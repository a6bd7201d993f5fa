"""--recipe_mode and the fine-tuning guard: real MobileNet v1, real photos from ../shared, small subsets.

- a fine-tuning that loses on validation keeps the head alone: the graph is byte for byte a
  head-only run's with the same seed, said in one line and in the training log;
- the recipe choice never reads the test split: the test photos' labels permuted, the choice,
  its scores and the model are the same;
- explicit flags pin the recipe; the one-line messages.
"""

from __future__ import annotations

import csv
import shutil

import pytest
from conftest import SIGN_DIGITS, SUPERHEROES, train_config

PER_CLASS = 15


@pytest.fixture(scope="module")
def few_superheroes(tmp_path_factory):
    root = tmp_path_factory.mktemp("few_superheroes_recipe")
    for folder in sorted(p for p in SUPERHEROES.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for photo in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
            shutil.copy(photo, root / folder.name / photo.name)
    return root


@pytest.fixture(scope="module")
def bottlenecks(tmp_path_factory):
    """One cache for every run of this file: the runs differ in what they train, not in what they read."""
    return tmp_path_factory.mktemp("recipe_bottlenecks")


def fixed_run(base, images, cache, **overrides):
    from tensorguess.retrain import retrain

    cfg = train_config(base, images, bottleneck_dir=cache, how_many_training_steps=200,
                       eval_step_interval=100, testing_percentage=20, validation_percentage=20, **overrides)
    lines: list[str] = []
    log = retrain(cfg, say=lines.append, warn=lines.append)
    return cfg, log, lines


def test_a_fine_tuning_that_loses_keeps_the_head_alone_byte_for_byte(few_superheroes, bottlenecks,
                                                                      tmp_path):
    head_cfg, head_log, head_lines = fixed_run(tmp_path / "head", few_superheroes, bottlenecks)
    # Adam at a learning rate of 1 wrecks the module's last layer within an epoch: it loses
    # (or diverges) on validation, whatever the head alone scores.
    fine_cfg, fine_log, fine_lines = fixed_run(tmp_path / "fine", few_superheroes, bottlenecks,
                                               fine_tune=True, fine_tune_layers="1", fine_tune_epochs=1,
                                               fine_tune_batch_size=8, fine_tune_learning_rate=1.0)
    entry = fine_log["fine_tune"]
    assert entry["kept"] == "head alone"
    assert entry["head_validation_accuracy"] == pytest.approx(head_log["steps"][-1]["validation_accuracy"],
                                                              abs=1e-6)
    kept = [line for line in fine_lines if line.startswith("Fine-tuning: kept the head alone")]
    assert len(kept) == 1 and "validation photos" in kept[0]
    assert fine_cfg.output_graph.read_bytes() == head_cfg.output_graph.read_bytes()
    assert fine_log["final_test_accuracy"] == head_log["final_test_accuracy"]
    assert not (tmp_path / "fine" / "fine_tune_checkpoint").exists()
    # The training log on disk says so, through the model folder's reader.
    from tensorguess.model_dir import TrainLog

    assert TrainLog.read(fine_cfg.train_log).fine_tune["kept"] == "head alone"
    assert "Recipe: as given (--recipe_mode fixed)" in head_lines
    assert "Fine-tuning was tried and not kept" in (fine_cfg.report_dir / "report.html").read_text()


@pytest.fixture(scope="module")
def digit_photos(tmp_path_factory):
    """16 photos of each sign-digit, in one folder (a labels CSV reads only inside its own)."""
    root = tmp_path_factory.mktemp("digits")
    for folder in sorted(p for p in SIGN_DIGITS.iterdir() if p.is_dir()):
        (root / folder.name).mkdir()
        for photo in sorted(folder.iterdir())[:16]:
            shutil.copy(photo, root / folder.name / photo.name)
    return root


def labels_csv(root, permute_test: bool):
    """A labels CSV over `root`'s photos with a fixed split (4 test, 4 validation of each class);
    with `permute_test`, each test photo is given the next class's label: every test label wrong."""
    labels = sorted(p.name for p in root.iterdir() if p.is_dir())
    rows = []
    for number, label in enumerate(labels):
        for k, photo in enumerate(sorted((root / label).iterdir())):
            split = "test" if k < 4 else "val" if k < 8 else "train"
            given = labels[(number + 1) % len(labels)] if permute_test and split == "test" else label
            rows.append((f"{label}/{photo.name}", given, split))
    path = root / ("poisoned.csv" if permute_test else "labels.csv")
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def auto_runs(tmp_path_factory, bottlenecks, digit_photos):
    """--recipe_mode auto (the default) on the same photos, the test labels true and then permuted."""
    from tensorguess.retrain import retrain

    runs = {}
    for name, permute in (("true", False), ("poisoned", True)):
        base = tmp_path_factory.mktemp(f"auto_{name}")
        cfg = train_config(base, digit_photos, labels_csv=labels_csv(digit_photos, permute),
                           bottleneck_dir=bottlenecks, how_many_training_steps=200, eval_step_interval=100,
                           recipe_mode="auto")
        lines: list[str] = []
        log = retrain(cfg, say=lines.append, warn=lines.append)
        runs[name] = (cfg, log, lines)
    return runs


def test_the_recipe_choice_never_reads_the_test_split(auto_runs):
    (true_cfg, true_log, _), (poisoned_cfg, poisoned_log, _) = auto_runs["true"], auto_runs["poisoned"]
    assert true_log["split_sizes"] == {"training": 80, "validation": 40, "testing": 40}
    choice = true_log["recipe"]
    assert choice["mode"] == "auto" and choice["chosen"] and choice["runner_up"]
    assert len(choice["candidates"]) >= 2
    without_time = [{k: v for k, v in c.items() if k != "seconds"} for c in choice["candidates"]]
    assert without_time == [{k: v for k, v in c.items() if k != "seconds"}
                            for c in poisoned_log["recipe"]["candidates"]]
    assert poisoned_log["recipe"]["chosen"] == choice["chosen"]
    assert poisoned_cfg.output_graph.read_bytes() == true_cfg.output_graph.read_bytes()
    # The poison did reach the test split: the same model scores worse against its labels.
    assert poisoned_log["final_test_accuracy"] < true_log["final_test_accuracy"]


def test_the_choice_is_one_line_with_the_runner_up(auto_runs):
    cfg, log, lines = auto_runs["true"]
    said = [line for line in lines if line.startswith("Recipe: chose")]
    assert len(said) == 1
    runner = log["recipe"]["runner_up"]
    assert f"runner-up {runner['name']} {runner['macro_f1']:.3f}" in said[0]
    assert "macro F1" in said[0] and "80 training photos" in said[0]
    assert log["recipe"]["line"] == said[0]
    from html import escape

    assert escape(said[0]) in (cfg.report_dir / "report.html").read_text()  # the report records it too
    # The chosen recipe is what was trained: the log's head and flags are its.
    from tensorguess.head.recipe_choice import CANDIDATES

    chosen = next(c for c in CANDIDATES if c.name == log["recipe"]["chosen"])
    for name, value in chosen.settings.items():
        assert log["flags"][name] == value


def parsed(*flags):
    from tensorguess.cli import build_parser
    from tensorguess.commands.train import train_config as from_flags

    return from_flags(build_parser().parse_args(["train", "/tmp", *flags]))


def test_explicit_flags_pin_the_recipe():
    from tensorguess.head.recipe_choice import CANDIDATES, candidate_configs, pinned

    everything = [c.name for c in CANDIDATES]
    assert [name for name, _ in candidate_configs(parsed())] == everything
    # Given at its default value, a flag still pins: the hidden layer is not tried.
    cfg = parsed("--hidden_units", "0")
    assert pinned(cfg) == ["hidden_units"]
    names = [name for name, _ in candidate_configs(cfg)]
    assert names and all("hidden" not in name for name in names)
    assert all(c.hidden_units == 0 for _, c in candidate_configs(cfg))
    # The whole recipe given: nothing is left to choose.
    whole = parsed("--hidden_units", "512", "--dropout_rate", "0.2", "--label_smoothing", "0.1",
                   "--optimizer", "adam", "--learning_rate", "0.001")
    assert len(candidate_configs(whole)) == 1


def test_a_pinned_or_fixed_recipe_is_trained_as_given_in_one_line():
    import numpy as np

    from tensorguess.head.recipe_choice import choose

    features = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    truth = np.repeat([0, 1], 20)
    fixed = parsed("--recipe_mode", "fixed", "--hidden_units", "16")
    choice = choose(fixed, features, np.arange(40), truth, 2, 1)
    assert choice.cfg is fixed and choice.line == "Recipe: as given (--recipe_mode fixed)"
    whole = parsed("--class_weights", "balanced", "--learning_rate", "0.5")
    choice = choose(whole, features, np.arange(40), truth, 2, 1)
    assert choice.cfg is whole
    assert choice.line == "Recipe: as given (pinned by --learning_rate, --class_weights)"
    assert choice.log["candidates"] == []


def test_fine_tuning_is_offered_in_one_line_only_where_a_gap_is_left():
    from tensorguess.head.recipe_choice import fine_tune_offer

    line = fine_tune_offer(0.9, 1300, 3)
    assert line.startswith("Recipe: validation accuracy 90.0% leaves a gap of 10.0 points; --fine_tune")
    assert "\n" not in line
    assert fine_tune_offer(0.99, 1300, 3) is None  # no gap
    assert fine_tune_offer(0.9, 1_000_000, 3) is None  # beyond the budget
    assert fine_tune_offer(float("nan"), 1300, 3) is None  # no validation to say
