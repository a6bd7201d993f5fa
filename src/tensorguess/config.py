"""Every training setting and its default, in one place (retrain.py's names)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tensorguess import model_dir
from tensorguess.features.augment import Recipe
from tensorguess.features.modules import DEFAULT_MODULE
from tensorguess.head.train import OPTIMIZERS, HeadSpec


class SettingError(ValueError):
    """A setting out of its range; the message names the flag and what it accepts."""


@dataclass
class TrainConfig:
    # data
    image_dir: Path = Path(model_dir.IMAGE_DIR)
    labels_csv: Path | None = None  # labels (and a split) from a CSV instead of folder names
    testing_percentage: float = 10.0
    validation_percentage: float = 10.0
    # photos whose bottlenecks are at least this close (cosine) stay in one split; None: automatic
    near_duplicate_threshold: float | None = None
    # module
    tfhub_module: str = DEFAULT_MODULE
    input_size: int | None = None  # None: from the module's signature or the known-module table
    input_range: str | None = None  # None: "0,1", the TF Hub convention
    trust_graph: bool = False  # load a module holding more than tensor computation (module_check.py)
    bottleneck_dir: Path = Path(model_dir.BOTTLENECKS)
    bottleneck_batch_size: int = 32
    # where the bottlenecks are computed (engine/): this process, or a Ray cluster
    engine: str = "local"
    ray_address: str | None = None  # None: RAY_ADDRESS, else one running or started on this machine
    ray_photos: str = "paths"  # paths: the workers read them (a shared filesystem); bytes: sent
    # training
    how_many_training_steps: int = 4000
    learning_rate: float = 0.01
    # the head (head/train.py HeadSpec); the defaults are retrain.py's
    hidden_units: int = 0
    dropout_rate: float = 0.0
    label_smoothing: float = 0.0
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    train_batch_size: int = 100
    validation_batch_size: int = 100
    test_batch_size: int = -1
    eval_step_interval: int = 10
    random_seed: int | None = None  # None: drawn at random and written to train_log.json
    print_misclassified_test_images: bool = False
    # augmentation (features/augment.py): distorted variants of the training photos, cached
    augment: int | None = None  # variants per training photo; None: 0, or 10 with retrain.py's flags
    augment_flip: float | None = None  # None: the recipe's default strength (augment.Recipe)
    augment_crop: float | None = None
    augment_scale: float | None = None
    augment_rotation: float | None = None
    augment_brightness: float | None = None
    augment_contrast: float | None = None
    augment_saturation: float | None = None
    augment_noise: float | None = None
    augment_blur: float | None = None
    augment_cutout: float | None = None
    # retrain.py's distortions, mapped onto the recipe (only those given are on)
    flip_left_right: bool = False
    random_crop: float = 0.0
    random_scale: float = 0.0
    random_brightness: float = 0.0
    # fine-tuning (head/fine_tune.py): the module's last layers with the head, after the head alone
    fine_tune: bool = False
    fine_tune_layers: str = "4"  # a number of layers counted from the output, or "all"
    fine_tune_learning_rate: float = 1e-4  # Adam's, for the module's layers and the head
    fine_tune_epochs: int = 3
    fine_tune_batch_size: int = 16
    # imbalance and calibration
    class_weights: str = "none"  # "balanced": weight the loss by inverse class frequency instead
    calibrate: str = "auto"  # temperature scaling on the validation split: auto, on or off
    # outputs
    summaries_dir: Path | None = None  # TensorBoard scalars; None: none written
    report_dir: Path = Path(model_dir.REPORT)
    output_graph: Path = Path(model_dir.GRAPH)
    output_labels: Path = Path(model_dir.LABELS)
    saved_model_dir: Path = Path(model_dir.SAVED_MODEL)
    train_log: Path = Path(model_dir.TRAIN_LOG)
    final_tensor_name: str = model_dir.FINAL_TENSOR

    def check(self) -> None:
        """Raise SettingError naming the first flag whose value cannot give a sound run.

        Called before any photo is read, so a typo costs nothing and never replaces a model.
        """
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise SettingError(message)

        require(math.isfinite(self.learning_rate) and self.learning_rate > 0,
                f"--learning_rate must be a finite number above 0, not {self.learning_rate:g}")
        for name in ("testing_percentage", "validation_percentage"):
            value = getattr(self, name)
            require(math.isfinite(value) and 0 <= value <= 100,
                    f"--{name} must be between 0 and 100, not {value:g}")
        require(self.testing_percentage + self.validation_percentage < 100,
                "--testing_percentage plus --validation_percentage must be under 100 "
                f"(now {self.testing_percentage + self.validation_percentage:g}), or nothing is "
                "left to train on")
        threshold = self.near_duplicate_threshold
        require(threshold is None or (math.isfinite(threshold) and 0 < threshold <= 1),
                f"--near_duplicate_threshold must be a cosine above 0 and at most 1, not {threshold}")
        for name in ("how_many_training_steps", "train_batch_size", "eval_step_interval",
                     "bottleneck_batch_size"):
            require(getattr(self, name) >= 1, f"--{name} must be at least 1, not {getattr(self, name)}")
        for name in ("validation_batch_size", "test_batch_size"):
            value = getattr(self, name)
            require(value == -1 or value >= 1, f"--{name} must be -1 (all) or at least 1, not {value}")
        require(self.input_size is None or 1 <= self.input_size <= 4096,
                f"--input_size must be between 1 and 4096 pixels, not {self.input_size}")
        require(self.random_seed is None or 0 <= self.random_seed < 2**63,
                f"--random_seed must be between 0 and 2**63-1, not {self.random_seed}")
        require(0 <= self.hidden_units <= 65536, f"--hidden_units must be between 0 and 65536, not "
                f"{self.hidden_units}")
        for name in ("dropout_rate", "label_smoothing"):
            value = getattr(self, name)
            require(math.isfinite(value) and 0 <= value < 1, f"--{name} must be at least 0 and under 1, "
                    f"not {value:g}")
        require(math.isfinite(self.weight_decay) and self.weight_decay >= 0,
                f"--weight_decay must be a finite number of at least 0, not {self.weight_decay:g}")
        require(self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}, "
                f"not {self.optimizer!r}")
        require(self.augment is None or 0 <= self.augment <= 1000,
                f"--augment must be between 0 and 1000 variants per photo, not {self.augment}")
        for name, limit in Recipe.LIMITS.items():
            value = getattr(self, f"augment_{name}")
            require(value is None or (math.isfinite(value) and 0 <= value <= limit),
                    f"--augment_{name} must be between 0 and {limit}, not {value}")
        for name, limit in (("random_crop", 90), ("random_scale", 100), ("random_brightness", 100)):
            value = getattr(self, name)
            require(math.isfinite(value) and 0 <= value <= limit,
                    f"--{name} must be a percentage between 0 and {limit}, not {value:g}")

        layers = str(self.fine_tune_layers)
        require(layers == "all" or (layers.isdigit() and 1 <= int(layers) <= 10000),
                f"--fine_tune_layers must be a number of layers of at least 1, or all, not {layers!r}")
        require(math.isfinite(self.fine_tune_learning_rate) and 0 < self.fine_tune_learning_rate <= 1,
                f"--fine_tune_learning_rate must be a number above 0 and at most 1, not "
                f"{self.fine_tune_learning_rate:g}")
        for name in ("fine_tune_epochs", "fine_tune_batch_size"):
            value = getattr(self, name)
            require(1 <= value <= 10000, f"--{name} must be between 1 and 10000, not {value}")
        if not self.fine_tune:  # a fine-tuning setting without --fine_tune would be silently ignored
            for name in ("fine_tune_layers", "fine_tune_learning_rate", "fine_tune_epochs",
                         "fine_tune_batch_size"):
                require(getattr(self, name) == getattr(TrainConfig, name),
                        f"--{name} is a setting of --fine_tune: add --fine_tune, or leave it out")

    def head(self) -> HeadSpec:
        return HeadSpec(self.hidden_units, self.dropout_rate, self.label_smoothing, self.optimizer,
                        self.weight_decay)

    def legacy_distortions(self) -> bool:
        return bool(self.flip_left_right or self.random_crop or self.random_scale or self.random_brightness)

    def variants(self) -> int:
        """Variants per training photo: --augment, else 10 when retrain.py's flags ask for any."""
        if self.augment is not None:
            return self.augment
        return 10 if self.legacy_distortions() else 0

    def recipe(self) -> Recipe:
        """The distortions: the defaults, or only retrain.py's when those are given; --augment_* over both."""
        base = Recipe.off() if self.legacy_distortions() else Recipe()
        chosen = {"flip": 50.0 if self.flip_left_right else base.flip,
                  "crop": self.random_crop or base.crop, "scale": self.random_scale or base.scale,
                  "brightness": self.random_brightness or base.brightness}
        for item in fields(Recipe):
            given = getattr(self, f"augment_{item.name}")
            chosen[item.name] = float(given) if given is not None else chosen.get(item.name,
                                                                                   getattr(base, item.name))
        return Recipe(**chosen)

    def as_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
