"""Shared fixtures: the real models and photo sets in ../shared, and one trained classifier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
MOBILENET_V1 = SHARED / "models" / "mobilenet_v1_100_224" / "feature_vector"
MOBILENET_V2 = SHARED / "models" / "mobilenet_v2_100_224" / "feature_vector"
SUPERHEROES = SHARED / "datasets" / "superheroes"
SIGN_DIGITS = SHARED / "datasets" / "sign-digits"


def pytest_configure(config):
    if not MOBILENET_V1.is_dir() or not SUPERHEROES.is_dir():
        raise pytest.UsageError(f"tests need ../shared beside the repository: {SHARED} is missing")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A classifier trained on the superheroes set with MobileNet v1: (tf_files dir, log)."""
    from tensorguess.retrain import retrain

    base = tmp_path_factory.mktemp("tf_files")
    cfg = train_config(base, SUPERHEROES)
    lines: list[str] = []
    log = retrain(cfg, say=lines.append, warn=lines.append)
    return base, log, lines


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """The superheroes classifier exported in every format: (dir, table, printed lines)."""
    import shutil

    base = tmp_path_factory.mktemp("exported")
    source, _, _ = trained
    for name in ("retrained_graph.pb", "retrained_labels.txt", "train_log.json"):
        shutil.copy(source / name, base / name)
    shutil.copytree(source / "saved_model", base / "saved_model")
    from tensorguess.deploy import export

    lines: list[str] = []
    table = export(base, ["tflite", "tflite-int8", "coreml"], say=lines.append, warn=lines.append)
    return base, table, lines


def train_config(base: Path, image_dir: Path, **overrides):
    from tensorguess.config import TrainConfig

    cfg = TrainConfig(
        image_dir=image_dir,
        tfhub_module=str(MOBILENET_V1),
        bottleneck_dir=base / "bottlenecks",
        output_graph=base / "retrained_graph.pb",
        output_labels=base / "retrained_labels.txt",
        saved_model_dir=base / "saved_model",
        train_log=base / "train_log.json",
        report_dir=base / "report",
        how_many_training_steps=1000,
        eval_step_interval=100,
        random_seed=7,
        # The suite's runs train the recipe they are given, as before --recipe_mode auto; its choice
        # (the default) is tested in test_recipe_choice.py, and would cost each run its folds.
        recipe_mode="fixed",
    )
    for name, value in overrides.items():
        setattr(cfg, name, value)
    return cfg
