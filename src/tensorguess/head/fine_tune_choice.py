"""--fine_tune as retrain.py runs it: the layers chosen by validation where not given, and the
fine-tuning kept only where it beats the head alone on the validation photos.

A training never ends worse than it started: the head trained on the bottlenecks is the
starting point, and each fine-tuning (head/fine_tune.py) keeps its best epoch by
validation; when that epoch's validation accuracy is not above the head alone's on the
same photos, or when every try diverged, the module's weights are put back bit for bit
and the head alone is what gets exported (the same graph, byte for byte, as a run
without --fine_tune and the same seed), said in one line and in the training log's
`fine_tune.kept`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tensorguess.data.dataset import Split
from tensorguess.features.modules import ModuleSpec
from tensorguess.head.fine_tune import (
    FineTuneDiverged,
    FineTuneSettings,
    Network,
    fine_tune,
    network_features,
)
from tensorguess.head.train import FinalLayer

# --fine_tune_layers not given: the last 4 layers, then all of them when the time budget allows
# (all cost about twice the last 4: 94 s against 49 s on sign-digits, docs/benchmarks.md section 8).
LAYER_CHOICES = ("4", "all")
ALL_LAYERS_COST = 2.0
BUDGET_SECONDS = 300.0


@dataclass
class Tried:
    """One fine-tuning of the layer choices: its best epoch's validation figures and weights."""

    layers: str
    accuracy: float
    loss: float
    log: dict
    network: Network | None = None
    values: list | None = None  # the trained variables' values at its best epoch

    def as_json(self) -> dict:
        return {"layers": self.layers, "validation_accuracy": self.accuracy, "validation_loss": self.loss,
                "chosen_epoch": self.log.get("chosen_epoch"), "seconds": self.log.get("seconds"),
                "diverged": self.log.get("diverged")}


def run(cfg, spec: ModuleSpec, loaded, layer: FinalLayer, parts: Split, digests: dict,
        seed: int, say: Callable[[str], None], warn: Callable[[str], None],
        head_only: tuple[float, np.ndarray, np.ndarray], offsets: np.ndarray | None = None):
    """retrain.py's step: fine-tune as `cfg` says, and keep it only where it beats the head alone.

    `head_only` is the head's validation accuracy on the bottlenecks and its validation and
    test features. Returns (the head, its validation and test features, the log entry): the
    fine-tuned network's, or, when no fine-tuning scored a higher validation accuracy than the
    head alone (or all diverged), `layer` and `head_only`'s features with the module's weights
    put back bit for bit, so the exported graph is the head-only run's. `offsets`: the logit
    adjustment in `layer`'s biases, which the fine-tuned head keeps (fine_tune.Network).
    """
    head_accuracy, head_val_x, head_test_x = head_only
    validation = parts.files("validation")
    original = [variable.numpy().copy() for variable in loaded.trainable_variables]
    choices = [cfg.fine_tune_layers] if cfg.fine_tune_layers else list(LAYER_CHOICES)
    started = time.perf_counter()
    tried: list[Tried] = []
    for layers in choices:
        if tried:
            estimate = tried[0].log.get("seconds", 0.0) * (ALL_LAYERS_COST if layers == "all" else 1.0)
            if time.perf_counter() - started + estimate > BUDGET_SECONDS:
                say(f"Fine-tuning: --fine_tune_layers {layers} not tried (about {estimate:.0f} s more, over "
                    f"the {BUDGET_SECONDS:.0f} s budget); give it to try it")
                break
            _put_back(loaded, original)
        tried.append(_try_layers(cfg, spec, loaded, layer, parts, digests, seed, layers, say, warn, offsets))
    finished = [t for t in tried if t.network is not None]
    best = max(finished, key=lambda t: t.accuracy, default=None)  # ties: the earlier, fewer layers
    if len(finished) > 1:
        say(f"Fine-tuning: chose --fine_tune_layers {best.layers} by validation ("
            + ", ".join(f"{t.layers}: {t.accuracy * 100:.1f}%" for t in finished) + ")")
    log = dict((best or tried[-1]).log)
    log["tried"] = [t.as_json() for t in tried]
    log["head_validation_accuracy"] = head_accuracy
    no_validation = not len(validation[0])
    if best is not None and (no_validation or best.accuracy > head_accuracy):
        for variable, value in zip(best.network.trained, best.values, strict=True):
            variable.assign(value)
        log["kept"] = "fine-tuned"
        if no_validation:
            say("Fine-tuning: kept without a validation split to judge it against the head alone")
        val_x = network_features(best.network, validation[0], cfg.fine_tune_batch_size)
        test_x = network_features(best.network, parts.files("testing")[0], cfg.fine_tune_batch_size)
        return best.network.final_layer(), val_x, test_x, log
    _put_back(loaded, original)
    log["kept"] = "head alone"
    fine = (f"{best.accuracy * 100:.1f}%" if best else "diverged")
    log["not_kept_because"] = (f"validation accuracy {fine} fine-tuned, {head_accuracy * 100:.1f}% "
                               "the head alone")
    say(f"Fine-tuning: kept the head alone: it scores {head_accuracy * 100:.1f}% on the "
        f"{len(validation[0])} validation photos, fine-tuned {fine}")
    return layer, head_val_x, head_test_x, log


def _try_layers(cfg, spec, loaded, layer, parts: Split, digests, seed, layers: str, say, warn,
                offsets=None) -> Tried:
    settings = FineTuneSettings(layers, cfg.fine_tune_epochs, cfg.fine_tune_learning_rate,
                                cfg.fine_tune_batch_size)
    try:
        network, log = fine_tune(spec, loaded, layer, parts.files("training"), parts.files("validation"),
                                 digests, cfg.recipe(), settings, seed, Path(cfg.train_log).parent, say, warn,
                                 offsets=offsets)
    except FineTuneDiverged as error:
        say(f"Fine-tuning: {error}")
        return Tried(layers, float("nan"), float("nan"), {"layers_asked": layers, "diverged": str(error)})
    chosen = next((e for e in log["history"] if e["epoch"] == log["chosen_epoch"]), None)
    accuracy = chosen["validation_accuracy"] if chosen else float("nan")
    loss = chosen["validation_loss"] if chosen else float("nan")
    return Tried(layers, accuracy, loss, log, network, [v.numpy().copy() for v in network.trained])


def _put_back(loaded, values: list[np.ndarray]) -> None:
    """The module's trainable variables as they were loaded, bit for bit."""
    for variable, value in zip(loaded.trainable_variables, values, strict=True):
        variable.assign(value)
