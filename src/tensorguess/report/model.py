"""The report's model: what it is made from (Evaluation) and what report.html shows (Page)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tensorguess import __version__
from tensorguess.data.images import Skipped
from tensorguess.errors import TensorGuessError
from tensorguess.model_dir import TrainLog

GENERATOR = f"tensor-guess {__version__}"
REPORT_FILES = ("report.json", "report.html", "confusion_matrix.png", "reliability.png",
                "training_curves.png")
WORST_SHOWN = 24
THUMBNAIL = 160
MANY_CLASSES = 10  # past this many classes, per-class tables list the worst recall first
NEAR_GROUPS_SHOWN = 6  # near-duplicate groups drawn in report.html, and photos drawn per group
NEAR_PHOTOS_SHOWN = 6


class ReportError(TensorGuessError):
    """The report cannot be written where asked; the message says why."""


@dataclass
class Evaluation:
    """What a report is made from: one classifier's scores on labelled images."""

    labels: list[str]
    truth: np.ndarray  # [n] index of each image's true label
    probabilities: np.ndarray  # [n, labels] the classifier's scores, as it outputs them
    paths: list[Path]  # each scored image, to read thumbnails from
    root: Path  # the labelled folder; files are named relative to it
    source: str  # in words: what was evaluated
    classifier: str
    unreadable: list[Skipped] = field(default_factory=list)
    # Scores before temperature scaling; None when there is no temperature (or it is 1).
    uncalibrated: np.ndarray | None = None
    temperature: float | None = None
    calibration_fit: dict | None = None  # how the temperature was chosen, at training
    leaks: object | None = None  # leaks.Leaks: which images the classifier trained on (evaluate)

    def name(self, path: Path) -> str:
        path = Path(path)
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)


@dataclass(frozen=True)
class FineTuning:
    """What of the module head/fine_tune.py trained, and how (the training log's `fine_tune`)."""

    layers: list[str]
    weights: int
    learning_rate: float
    epochs: int
    distortions: str
    seconds: float
    chosen_epoch: int | None
    chosen_validation_accuracy: float | None  # of the kept epoch; None when unknown
    # head/fine_tune_choice.py: "fine-tuned", or "head alone" when it did not beat the head (and why)
    kept: str = "fine-tuned"
    not_kept_because: str | None = None

    @classmethod
    def of(cls, fine: dict) -> FineTuning:
        chosen = next((h for h in fine.get("history", []) if h["epoch"] == fine.get("chosen_epoch")), None)
        return cls(layers=fine.get("layers", []), weights=fine.get("weights", 0),
                   learning_rate=fine.get("learning_rate", 0.0), epochs=fine.get("epochs", 0),
                   distortions=fine.get("distortions", ""), seconds=fine.get("seconds", 0.0),
                   chosen_epoch=fine.get("chosen_epoch"),
                   chosen_validation_accuracy=chosen["validation_accuracy"] if chosen else None,
                   kept=fine.get("kept", "fine-tuned"), not_kept_because=fine.get("not_kept_because"))


@dataclass(frozen=True)
class Training:
    """The training run behind the classifier, as report.html describes it."""

    evaluations: int  # evaluation steps drawn in training_curves.png
    split_sizes: dict[str, int]
    fine_tuning: FineTuning | None
    recipe_line: str | None = None  # head/recipe_choice.py's line: the recipe chosen and the runner-up

    @classmethod
    def of(cls, train_log: TrainLog) -> Training:
        fine = train_log.fine_tune
        line = (train_log.recipe or {}).get("line")
        return cls(evaluations=len(train_log.steps), split_sizes=train_log.split_sizes,
                   fine_tuning=FineTuning.of(fine) if fine else None,
                   recipe_line=line if isinstance(line, str) else None)


@dataclass(frozen=True)
class Page:
    """Everything report.html shows: report.json's content, the figures, photos and training."""

    report: dict
    figures: list[str]
    thumbnails: dict[str, str]  # file name -> data: URI
    training: Training | None = None
    data_checks: dict | None = None  # the training log's `data_checks`

    @classmethod
    def of(cls, report: dict, figures: list[str], thumbnails: dict[str, str],
           train_log: TrainLog | None = None) -> Page:
        return cls(report, figures, thumbnails, Training.of(train_log) if train_log else None,
                   (train_log.data_checks or None) if train_log else None)
