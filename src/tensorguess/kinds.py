"""The kinds of model, each with the functions that train, open, sort, evaluate and export it.

A model's kind ("classes" or "points") says what its scores mean, so every command
asks this registry for the functions of the model it was given, in one place, and refuses a
kind it does not know. The functions are named, not imported: a command imports only what
the chosen kind and job need (TensorFlow, for instance, only once it runs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tensorguess import model_dir, publish
from tensorguess.errors import TensorGuessError


class UnknownKind(TensorGuessError):
    """The model's kind is not one this tensor-guess knows; the message names the file."""


@dataclass(frozen=True)
class Kind:
    """What a kind of model is made and used with: each job as "module:function"."""

    name: str
    train: str  # (TrainConfig) -> the log's dict
    open_model: str  # (folder, model, graph, labels, final_tensor_name, trust_graph, tta) -> a scorer
    sort: str  # (scorer, source, dest, batch_size, warn) -> a summary
    evaluate: str  # (scorer, labelled, model path, batch_size, warn, train_log, train_log_path) -> a record
    export: str  # (folder, formats, graph, labels, final_tensor_name, ...) -> the table
    guess_lines: str  # (scorer, result) -> the lines guess prints for one photo
    guess_document: str  # (scorer, result) -> guess --json's fields for one photo
    serve_app: str  # (scorer, limits, access) -> the HTTP app serve runs

    def function(self, job: str) -> Callable:
        module, name = getattr(self, job).split(":")
        return getattr(importlib.import_module(module), name)


KINDS = {
    model_dir.CLASSES: Kind(model_dir.CLASSES, train="tensorguess.retrain:retrain",
                            open_model="tensorguess.score.models:open_classifier",
                            sort="tensorguess.sort.folder:sort",
                            evaluate="tensorguess.report.evaluate:evaluate_folder",
                            export="tensorguess.deploy:export",
                            guess_lines="tensorguess.score.predict:guess_lines",
                            guess_document="tensorguess.score.predict:guess_document",
                            serve_app="tensorguess.serve.http_app:build_app"),
    model_dir.POINTS: Kind(model_dir.POINTS, train="tensorguess.train_points:train",
                           open_model="tensorguess.score.points:open_points_model",
                           sort="tensorguess.points_guessdir:sort",
                           evaluate="tensorguess.report.points_evaluate:evaluate_points",
                           export="tensorguess.deploy_points:export",
                           guess_lines="tensorguess.score.points_guess:guess_lines",
                           guess_document="tensorguess.score.points_guess:guess_document",
                           serve_app="tensorguess.serve.http_app:build_app"),
}


def named(name: str) -> Kind:
    """The kind called `name` (train's choice)."""
    return KINDS[name]


def of_model(folder: Path) -> Kind:
    """The kind of the model in `folder`, read while no training publishes there (publish.steady),
    so it is the kind of the graph opened next; UnknownKind if it is not one of KINDS."""
    folder = Path(folder)
    with publish.steady(folder) as where:
        path = where(folder / model_dir.MODEL_KIND)
        try:
            name = model_dir.read_kind(path)
        except OSError as error:
            raise UnknownKind(f"cannot read {path} ({error.strerror or error}): it names the kind of "
                              "the model; train again to write it") from error
    if name not in KINDS:
        raise UnknownKind(f"{path} names a model of kind {name[:40]!r}, which this tensor-guess does not "
                          f"know (it knows {', '.join(KINDS)}): use the tensor-guess that trained it, "
                          "or train again")
    return KINDS[name]
