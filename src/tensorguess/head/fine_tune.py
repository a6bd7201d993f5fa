"""Fine-tuning: the module's last layers trained with the head, on photos distorted on the fly.

The head is first trained on the stored bottlenecks (retrain.py's cheap way, as
without --fine_tune); this then trains it again together with the module's layers
nearest its output, on the training photos decoded every epoch and distorted with
the run's recipe (features/augment.py), a fresh variant of each photo per epoch.
Validation photos are never distorted nor trained on: they pick the epoch kept.

The module's variables are updated in place, so export/frozen.py's `frozen_module`
freezes the fine-tuned values and the exported graph is the fine-tuned network.
Fine-tuned features are never stored in the bottleneck cache (keyed by the module's
identity: they belong to another extractor); the validation and test features of
the fine-tuned network are computed here, for calibration and the test report.

After each epoch a checkpoint (the trained variables, Adam's state, the best epoch
so far and the history) is written into `fine_tune_checkpoint/`; a run killed and
started again with the same settings and photos resumes after the last epoch done.
The checkpoint's `state.json` is replaced atomically and names the checkpoint files
it belongs to, so a kill mid-write leaves the previous checkpoint in force.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tensorguess import strict_json
from tensorguess.atomic_write import write_atomically
from tensorguess.errors import TensorGuessError
from tensorguess.features import augment
from tensorguess.features.modules import ModuleSpec, feature_function, to_value_range
from tensorguess.features.pipeline import decoded_batches, progress
from tensorguess.head.train import FinalLayer
from tensorguess.model_dir import FINE_TUNE_CHECKPOINT

CHECKPOINT_FOLDER = FINE_TUNE_CHECKPOINT
STATE_FILE = "state.json"
FORMAT = 1  # bump when what a checkpoint holds changes: older ones are then ignored


class FineTuneError(TensorGuessError, ValueError):
    """Fine-tuning cannot run as asked; the message names the flag or the file."""


class FineTuneDiverged(FineTuneError):
    """The loss stopped being a finite number: this fine-tuning lost, the head alone stays."""


@dataclass(frozen=True)
class FineTuneSettings:
    layers: str  # "all" or a number of layers, counted from the module's output
    epochs: int
    learning_rate: float
    batch_size: int


@dataclass
class Epoch:
    epoch: int
    train_accuracy: float  # on the distorted photos, as the weights moved during the epoch
    train_loss: float
    validation_accuracy: float
    validation_loss: float
    seconds: float
    images_per_second: float

    def as_json(self) -> dict:
        return asdict(self)


def layer_groups(loaded) -> list[tuple[str, list]]:
    """The module's trainable variables grouped by layer (the name less its last part), in the
    module's own order, which for TF Hub's image modules runs from the input to the output."""
    groups: dict[str, list] = {}
    for variable in loaded.trainable_variables:
        groups.setdefault(variable.name.rsplit("/", 1)[0], []).append(variable)
    return list(groups.items())


def chosen_layers(loaded, layers: str) -> list[tuple[str, list]]:
    groups = layer_groups(loaded)
    if not groups:
        raise FineTuneError("--fine_tune: the module has no trainable variables to fine-tune")
    if layers == "all":
        return groups
    count = int(layers)
    if count > len(groups):
        raise FineTuneError(f"--fine_tune_layers {count} is more than the module's {len(groups)} layers; "
                            f"give at most {len(groups)}, or all")
    return groups[-count:]


def best_epoch(history: list[Epoch]) -> Epoch:
    """The epoch the validation split likes best: the highest accuracy, then the lowest loss,
    then the earliest; the last one when there is no validation split."""
    if not all(np.isfinite(e.validation_accuracy) for e in history):
        return history[-1]
    return min(history, key=lambda e: (-e.validation_accuracy, e.validation_loss, e.epoch))


class Network:
    """The module (its chosen layers trainable) and the head, as TensorFlow variables."""

    def __init__(self, spec: ModuleSpec, loaded, layer: FinalLayer, layers: str, learning_rate: float,
                 offsets: np.ndarray | None = None):
        """`offsets`: the logit adjustment already in `layer`'s biases (head/balance.py). They are
        taken out for the training, which learns the head as it was trained (on the photos' own
        priors), and put back by final_layer(), so the fine-tuned model decides adjusted too:
        left in, the training loss would learn them away."""
        import keras
        import tensorflow as tf

        self.spec = spec
        self.offsets = None if offsets is None else np.asarray(offsets, np.float32)
        biases = layer.biases if self.offsets is None else layer.biases - self.offsets
        self.groups = chosen_layers(loaded, layers)
        self.module_variables = [v for _, group in self.groups for v in group]
        self.head = [tf.Variable(value, name=name) for name, value in (
            ("hidden_weights", layer.hidden_weights), ("hidden_biases", layer.hidden_biases),
            ("final_weights", layer.weights), ("final_biases", biases)) if value is not None]
        self.trained = [*self.module_variables, *self.head]
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(self.trained)
        features = feature_function(loaded)

        def logits(images):
            x = features(to_value_range(images, spec.value_range))
            if len(self.head) == 4:
                x = tf.nn.relu(tf.matmul(x, self.head[0]) + self.head[1])
            return tf.matmul(x, self.head[-2]) + self.head[-1]

        def measured(logits_, truth):
            per_image = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=truth, logits=logits_)
            loss = tf.reduce_mean(per_image)
            accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits_, 1), truth), tf.float32))
            return accuracy, loss

        size = spec.input_size
        images_spec = tf.TensorSpec([None, size, size, 3], tf.float32)

        @tf.function(input_signature=[images_spec, tf.TensorSpec([None], tf.int64)])
        def train_step(images, truth):
            with tf.GradientTape() as tape:
                accuracy, loss = measured(logits(images), truth)
            gradients = tape.gradient(loss, self.trained)
            self.optimizer.apply_gradients(zip(gradients, self.trained, strict=True))
            return accuracy, loss

        self.train_step = train_step
        self.features = tf.function(lambda images: features(to_value_range(images, spec.value_range)),
                                    input_signature=[images_spec])

    def final_layer(self) -> FinalLayer:
        """The head as it decides: the offsets (if any) back in its biases."""
        values = [v.numpy() for v in self.head]
        if self.offsets is not None:
            values[-1] = values[-1] + self.offsets
        if len(values) == 4:
            return FinalLayer(values[2], values[3], hidden_weights=values[0], hidden_biases=values[1])
        return FinalLayer(values[0], values[1])

    def describe(self) -> list[str]:
        return [name for name, _ in self.groups]


def network_features(network: Network, paths: list[Path], batch_size: int) -> np.ndarray:
    """The (fine-tuned) module's features of undistorted photos, in order; never cached.

    A photo that cannot be read now (it could when its bottleneck was computed) stops the
    run with a line naming it: its split's numbers would otherwise silently change.
    """
    out = np.zeros((len(paths), 0), np.float32)
    rows = []
    for batch in decoded_batches(paths, network.spec.input_size, batch_size):
        for path, error in batch.entries:
            if error:
                raise FineTuneError(f"{path}: cannot be read any more ({error}); it was when its "
                                    "bottleneck was computed: put it back or remove it, and run again")
        rows.append(network.features(batch.pixels).numpy())
    return np.concatenate(rows) if rows else out


def fine_tune(spec: ModuleSpec, loaded, layer: FinalLayer, train: tuple[list[Path], np.ndarray],
              validation: tuple[list[Path], np.ndarray], digests: dict, recipe: augment.Recipe,
              settings: FineTuneSettings, seed: int, folder: Path,
              say: Callable[[str], None], warn: Callable[[str], None],
              after_epoch: Callable[[Epoch], None] = lambda epoch: None,
              offsets: np.ndarray | None = None) -> tuple[Network, dict]:
    """Fine-tune in place `loaded`'s last layers and a copy of `layer`; returns the network at
    the best epoch and the log entry. `folder` holds the checkpoint (removed once done).
    `offsets`: the logit adjustment in `layer`'s biases, kept out of the training (Network)."""
    import tensorflow as tf

    started = time.perf_counter()
    network = Network(spec, loaded, layer, settings.layers, settings.learning_rate, offsets)
    train_paths, train_y = train
    val_paths, val_y = validation
    epoch_done = tf.Variable(0, dtype=tf.int64, name="epoch")
    best = [tf.Variable(v) for v in network.trained]  # the best epoch's values
    checkpoint = tf.train.Checkpoint(trained=network.trained, optimizer=network.optimizer,
                                     epoch=epoch_done, best=best)
    folder = Path(folder) / CHECKPOINT_FOLDER
    fingerprint = _fingerprint(spec, network, layer, train_paths, train_y, val_paths, val_y, digests,
                               recipe, settings, seed)
    history = _resume(folder, fingerprint, checkpoint, say)
    first = int(epoch_done.numpy()) + 1
    say(f"Fine-tuning {len(network.groups)} layer(s) of the module ({network.groups[0][0]} to "
        f"{network.groups[-1][0]}, {sum(int(np.prod(v.shape)) for v in network.module_variables):,} "
        f"weights) with the head: Adam {settings.learning_rate:g}, {settings.epochs} epoch(s) of "
        f"{len(train_paths)} training photos, {recipe.describe()}")
    # The head alone, as trained on the bottlenecks (or as resumed): what fine-tuning has to beat.
    before = _validate(network, val_paths, val_y, settings.batch_size)
    say(f"Fine-tuning: validation accuracy {before[0] * 100:.1f}%, loss {before[1]:.4f} before epoch {first}")
    variant_identity = f"{recipe.identity()}/fine-tune/{seed}"
    size = spec.input_size
    training_images = 0
    training_seconds = 0.0
    for epoch in range(first, settings.epochs + 1):
        epoch_started = time.perf_counter()
        # A fresh order and a fresh variant of every photo each epoch, both fixed by the seed,
        # so that a resumed run trains on what the uninterrupted one would have.
        order = np.random.default_rng([seed, epoch]).permutation(len(train_paths))
        paths = [train_paths[i] for i in order]
        label_of = dict(zip(train_paths, train_y.tolist(), strict=True))
        accuracies, losses, counts = [], [], []
        with progress(len(paths), f"Fine-tuning epoch {epoch}/{settings.epochs}") as bar:
            for batch in decoded_batches(paths, size, settings.batch_size):
                readable = [path for path, error in batch.entries if not error]
                for path, error in batch.entries:
                    if error:
                        warn(f"tensor-guess: {path}: skipped in fine-tuning epoch {epoch} ({error})")
                if readable:
                    keys = [augment.variant_key(variant_identity, digests[p], epoch) for p in readable]
                    drawn = [augment.parameters(recipe, key, size) for key in keys]
                    images = augment.distort(batch.pixels, drawn)
                    truth = np.array([label_of[p] for p in readable], np.int64)
                    accuracy, loss = network.train_step(images, truth)
                    accuracies.append(float(accuracy))
                    losses.append(float(loss))
                    counts.append(len(readable))
                bar.update(len(batch.entries))
        seconds = time.perf_counter() - epoch_started
        if not counts or not np.all(np.isfinite(losses)):
            last = losses[-1] if losses else "none"
            _remove_checkpoint_files(folder)  # nothing to resume: a rerun would diverge again
            raise FineTuneDiverged(f"fine-tuning diverged in epoch {epoch} (loss {last}); try a smaller "
                                   f"--fine_tune_learning_rate than {settings.learning_rate:g}")
        val_accuracy, val_loss = _validate(network, val_paths, val_y, settings.batch_size)
        trained_images = int(sum(counts))
        result = Epoch(epoch, float(np.average(accuracies, weights=counts)),
                       float(np.average(losses, weights=counts)), val_accuracy, val_loss, round(seconds, 3),
                       round(trained_images / seconds, 2) if seconds else 0.0)
        training_images += trained_images
        training_seconds += seconds
        history.append(result)
        say(f"Fine-tuning epoch {epoch}: train accuracy {result.train_accuracy * 100:.1f}%, loss "
            f"{result.train_loss:.4f}; validation accuracy {val_accuracy * 100:.1f}%, loss {val_loss:.4f} "
            f"(N={len(val_y)}); {result.images_per_second:.1f} images/s")
        if best_epoch(history) is result:
            for kept, variable in zip(best, network.trained, strict=True):
                kept.assign(variable)
        epoch_done.assign(epoch)
        _write_checkpoint(folder, checkpoint, epoch, fingerprint, seed, history)
        after_epoch(result)
    chosen = best_epoch(history) if history else None
    if chosen is not None:
        for variable, kept in zip(network.trained, best, strict=True):
            variable.assign(kept)
        say(f"Fine-tuning: kept epoch {chosen.epoch} (validation accuracy "
            f"{chosen.validation_accuracy * 100:.1f}%, loss {chosen.validation_loss:.4f})")
    _remove_checkpoint_files(folder)
    log = {"layers": network.describe(), "layers_asked": settings.layers,
           "weights": int(sum(int(np.prod(v.shape)) for v in network.module_variables)),
           "epochs": settings.epochs, "resumed_at_epoch": first if first > 1 else None,
           "validation_before": {"epoch": first - 1, "accuracy": before[0], "loss": before[1]},
           "learning_rate": settings.learning_rate, "optimizer": "adam", "batch_size": settings.batch_size,
           "distortions": recipe.describe(), "history": [e.as_json() for e in history],
           "chosen_epoch": chosen.epoch if chosen else None,
           "seconds": round(time.perf_counter() - started, 3),
           "images_per_second": round(training_images / training_seconds, 2) if training_seconds else None}
    return network, log


def _validate(network: Network, paths: list[Path], truth: np.ndarray, batch_size: int) -> tuple[float, float]:
    if not len(paths):
        return float("nan"), float("nan")
    layer = network.final_layer()
    logits = layer.logits(network_features(network, paths, batch_size))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = float(-np.mean(log_probabilities[np.arange(len(truth)), truth]))
    return float(np.mean(logits.argmax(axis=1) == truth)), loss


def _fingerprint(spec, network: Network, layer: FinalLayer, train_paths, train_y, val_paths, val_y, digests,
                 recipe, settings: FineTuneSettings, seed: int) -> str:
    """What a checkpoint must have been made with to be resumed: the module, the layers, the
    head it started from (which carries the head's own settings), the photos and their labels,
    the distortions and every setting of the loop but the number of epochs (which may grow)."""
    head = hashlib.sha1()
    for value in (layer.weights, layer.biases, layer.hidden_weights, layer.hidden_biases):
        if value is not None:
            head.update(np.ascontiguousarray(value).tobytes())
    text = json.dumps({
        "format": FORMAT, "module": spec.identity, "layers": network.describe(),
        "head": head.hexdigest(), "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size, "seed": seed, "recipe": recipe.identity(),
        "training": sorted(zip((digests[p] for p in train_paths), train_y.tolist(), strict=True)),
        "validation": sorted(zip((digests[p] for p in val_paths), val_y.tolist(), strict=True)),
    }, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()


def _resume(folder: Path, fingerprint: str, checkpoint, say) -> list[Epoch]:
    """The history of the epochs a matching checkpoint holds, restored into `checkpoint`; [] if none."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        say(f"Fine-tuning: ignored the checkpoint in {folder} (unreadable: {error}); starting at epoch 1")
        return []
    if state.get("fingerprint") != fingerprint:
        say(f"Fine-tuning: ignored the checkpoint in {folder} (made with other settings or photos); "
            "starting at epoch 1")
        return []
    try:
        checkpoint.read(str(folder / state["prefix"])).assert_existing_objects_matched()
    except (KeyError, ValueError, AssertionError, OSError) as error:
        say(f"Fine-tuning: ignored the checkpoint in {folder} (damaged: {str(error).splitlines()[0][:120]}); "
            "starting at epoch 1")
        return []
    history = [Epoch(**{k: float("nan") if v is None else v for k, v in entry.items()})
               for entry in state["history"]]
    say(f"Fine-tuning: resuming from the checkpoint in {folder} after epoch {state['epoch']}")
    return history


def saved_seed(folder: Path) -> int | None:
    """The seed of the checkpoint in `folder` (a run's folder), if one is there: a run given no
    --random_seed draws one, and must draw the interrupted run's to resume it."""
    try:
        seed = json.loads((Path(folder) / CHECKPOINT_FOLDER / STATE_FILE).read_text()).get("seed")
    except (OSError, ValueError, AttributeError):
        return None
    return seed if isinstance(seed, int) and 0 <= seed < 2**63 else None


def _write_checkpoint(folder: Path, checkpoint, epoch: int, fingerprint: str, seed: int,
                      history: list[Epoch]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"epoch-{epoch}"
    checkpoint.write(str(folder / prefix))
    state = {"format": FORMAT, "fingerprint": fingerprint, "seed": seed, "epoch": epoch, "prefix": prefix,
             "history": [e.as_json() for e in history]}
    write_atomically(folder / STATE_FILE, strict_json.dumps(state, indent=1).encode())
    _remove_checkpoint_files(folder, keep=prefix)  # the previous epochs', now that state.json names this


def _remove_checkpoint_files(folder: Path, keep: str | None = None) -> None:
    """The files this module wrote in `folder` (all but `keep`'s); the folder too once empty.
    Only ours: anything else someone put there stays, and so does the folder."""
    for old in folder.glob("epoch-*"):
        if re.fullmatch(r"epoch-\d+\.(index|data-\d+-of-\d+)", old.name) and not (
                keep and old.name.startswith(keep + ".")):
            old.unlink(missing_ok=True)
    if keep is None:
        (folder / STATE_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()
