"""Every training setting, its default, help and choices, in one place (retrain.py's names)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from tensorguess import model_dir
from tensorguess.engine.choice import ENGINES, PHOTO_TRANSPORTS
from tensorguess.features.augment import Recipe
from tensorguess.features.modules import DEFAULT_MODULE
from tensorguess.head.balance import CLASS_WEIGHTS
from tensorguess.head.recipe_choice import MODES as RECIPE_MODES
from tensorguess.head.train import OPTIMIZERS, HeadSpec


class SettingError(ValueError):
    """A setting out of its range; the message names the flag and what it accepts."""


def setting(default, help: str, choices: tuple | None = None, in_dir: bool = False,
            shown: str | None = None, bare: str | None = None):
    """A TrainConfig field, with what train's flag says about it (commands/train.py builds the flag):
    `help`; the `choices` it takes; `in_dir`: a path taken inside DIR when relative; `shown`: what a
    default of None stands for (a default otherwise shows itself); `bare`: the value of the flag
    given without one."""
    metadata = {"help": help, "choices": choices, "in_dir": in_dir, "shown": shown, "bare": bare}
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    # data
    image_dir: Path = setting(Path(model_dir.IMAGE_DIR),
        "folder of category folders of images; with train/, val/ and test/ folders of category folders, "
        "that split is used", in_dir=True)
    labels_csv: Path | None = setting(None,
        "CSV naming each photo and its label (columns path and label, optionally split: train, val or "
        "test), paths relative to the CSV; instead of DIR/data's folders", in_dir=True)
    testing_percentage: float = setting(10.0, "percentage of images kept for the final test")
    validation_percentage: float = setting(10.0, "percentage of images kept for validation")
    near_duplicate_threshold: float | None = setting(None,
        "photos whose features are at least this similar (cosine), or identical, are kept in one split; 1"
        " joins only identical features", shown="automatic, 0.90 or more; see README")
    # module
    tfhub_module: str = setting(DEFAULT_MODULE, "TF Hub module URL or handle, or a local SavedModel folder",
                                shown="$TFHUB_MODULE, else Inception v3")
    input_size: int | None = setting(None, "module input height and width in pixels", shown="from the module")
    input_range: str | None = setting(None,
        "module input value range: 0,1 (TF Hub), -1,1 or 0,255", shown="0,1")
    trust_graph: bool = setting(False,
        "load the module even if it holds operations that can do more than compute (read or write "
        "files...); only for a module whose maker you trust")
    bottleneck_dir: Path = setting(Path(model_dir.BOTTLENECKS), "bottleneck cache folder", in_dir=True)
    bottleneck_batch_size: int = setting(32, "images per batch when computing bottlenecks")
    # where the bottlenecks are computed (engine/): this process, or a Ray cluster
    engine: str = setting("local",
        "where bottlenecks are computed: local (this process) or ray (a Ray cluster: pip install -r "
        "requirements-ray.txt)", choices=ENGINES)
    ray_address: str | None = setting(None,
        "the Ray cluster of --engine ray", shown="RAY_ADDRESS, else one running or started on this machine")
    ray_photos: str = setting("paths",
        "--engine ray: paths (workers read the photos: a filesystem every node sees) or bytes (this "
        "machine reads them and sends them)", choices=PHOTO_TRANSPORTS)
    # --recipe_mode (head/recipe_choice.py): the head's recipe chosen by cross-validation on the training part
    recipe_mode: str = setting("auto",
        "auto: try the cheap head recipes by 3-fold cross-validation on the training photos and train the "
        "best by macro F1 (flags given for the head pin those settings); fixed: the flags' recipe only",
        choices=RECIPE_MODES)
    # training
    how_many_training_steps: int = setting(4000, "training steps")
    learning_rate: float = setting(0.01, "learning rate of the final layer")
    # the head (head/train.py HeadSpec); the defaults are retrain.py's
    hidden_units: int = setting(0,
        "a ReLU layer of this many units before the softmax (0: retrain.py's single layer)")
    dropout_rate: float = setting(0.0, "share of each layer's inputs dropped at random while training")
    label_smoothing: float = setting(0.0, "train towards labels smoothed by this much (0: none)")
    optimizer: str = setting("sgd",
        "sgd (retrain.py's), momentum (SGD with momentum 0.9) or adam", choices=OPTIMIZERS)
    weight_decay: float = setting(0.0, "decoupled weight decay of the head's weights, per step (0: none)")
    train_batch_size: int = setting(100, "images per training step")
    validation_batch_size: int = setting(100, "images per validation evaluation; -1 uses all")
    test_batch_size: int = setting(-1, "images for the final test; -1 uses all")
    eval_step_interval: int = setting(10, "evaluate every this many steps")
    random_seed: int | None = setting(None,
        "seed for a reproducible run", shown="random, written to train_log.json")
    print_misclassified_test_images: bool = setting(False, "list the test images the classifier got wrong")
    # augmentation (features/augment.py): distorted variants of the training photos, cached
    augment: int | None = setting(None,
        "train also on this many distorted variants of each training photo (never of validation or test "
        "photos), their bottlenecks cached like the photos' own",
        shown="0; 10 when one of retrain.py's --flip_left_right, --random_crop, --random_scale, "
        "--random_brightness is given")
    # None: the recipe's strength (augment.Recipe, whose defaults the help shows)
    augment_flip: float | None = setting(None, "chance of a mirror image, %")
    augment_crop: float | None = setting(None, "at most this % of each side cut off, the rest enlarged back")
    augment_scale: float | None = setting(None, "a further zoom of up to this %")
    augment_rotation: float | None = setting(None, "rotation of up to this many degrees either way")
    augment_brightness: float | None = setting(None, "brightness within +- this %")
    augment_contrast: float | None = setting(None, "contrast within +- this %")
    augment_saturation: float | None = setting(None, "saturation within +- this %")
    augment_noise: float | None = setting(None, "Gaussian noise of up to this % of the full range")
    augment_blur: float | None = setting(None, "a blur or a sharpening of up to this % of a 3x3 Gaussian's")
    augment_cutout: float | None = setting(None, "a grey square of up to this % of the side")
    # retrain.py's distortions, mapped onto the recipe (only those given are on)
    flip_left_right: bool = setting(False,
        "retrain.py's: mirror images among the variants (turns --augment on)")
    random_crop: float = setting(0.0, "retrain.py's: --augment_crop, in % (turns --augment on)")
    random_scale: float = setting(0.0, "retrain.py's: --augment_scale, in % (turns --augment on)")
    random_brightness: float = setting(0.0, "retrain.py's: --augment_brightness, in % (turns --augment on)")
    # fine-tuning (head/fine_tune.py): the module's last layers with the head, after the head alone
    fine_tune: bool = setting(False,
        "after the head, train the module's last layers with it on the training photos, decoded and "
        "distorted (the --augment_* recipe) every epoch; keeps the epoch the validation split likes best;"
        " resumes from DIR/fine_tune_checkpoint after an interruption")
    fine_tune_layers: str | None = setting(None,
        "layers of the module trained by --fine_tune, counted from its output, or all",
        shown="chosen by validation: the last 4, and all when the time budget allows")
    # Adam's, for the module's layers and the head
    fine_tune_learning_rate: float = setting(1e-4, "Adam's learning rate for --fine_tune")
    fine_tune_epochs: int = setting(3, "epochs of --fine_tune (passes over the training photos)")
    fine_tune_batch_size: int = setting(16, "photos per step of --fine_tune")
    # imbalance and calibration
    class_weights: str = setting("adjusted",
        "adjusted: draw training images uniformly, then lower each class's logit by tau x log(its share "
        "of the training photos) (logit adjustment; tau 1.5, or chosen from the training photos by "
        "--recipe_mode auto; docs/long-tails.md); balanced: draw them uniformly "
        "and weight the loss by inverse class frequency; none: draw each batch class-uniformly, as "
        "retrain.py (the default before issue 23)", choices=CLASS_WEIGHTS)
    calibrate: str = setting("auto",
        "temperature scaling fitted on the validation split: auto applies it when it lowers the "
        "validation NLL, on always (the bare flag), off never", choices=("auto", "on", "off"), bare="on")
    # points (a points model: trained instead of classes when DIR/keypoints.json exists or
    # --keypoints names a file; train_points.py)
    keypoints: Path | None = setting(None,
        "labelled points to train a points model on: COCO keypoints JSON, DeepLabCut's CollectedData "
        "CSV, or a CSV of image,NAME_x,NAME_y,...; photo paths relative to --image_dir",
        in_dir=True, shown="DIR/keypoints.json when it exists (else classes are trained)")
    keypoint_origin: str | None = setting(None,
        "where the file's coordinates start: corner (0,0 is the top-left pixel's corner) or "
        "pixel-centre (its centre: a COCO file converted from DeepLabCut without +0.5)",
        choices=("corner", "pixel-centre"), shown="the format's: pixel-centre for DeepLabCut, else corner")
    flip_pairs: str | None = setting(None,
        "points a horizontal flip swaps, as left:right name pairs, comma-separated (left_ear:right_ear)",
        shown="the file's, else those the names give (left_/right_, l_/r_...)")
    skeleton: str | None = setting(None,
        "bones drawn between points, as a-b name pairs, comma-separated", shown="the file's")
    group_by: str | None = setting(None,
        "photos whose path relative to --image_dir gives the same match of this regular expression "
        "(its first group, if it has one) stay in one split: labeled-data/([^/]+)/ keeps each video "
        "together")
    locate: str = setting("auto",
        "points: find the object's box first and regress its points on the crop: on, off, or auto "
        "(on when the labelled points span a small part of the photos)", choices=("auto", "on", "off"))
    point_epochs: int | None = setting(None, "points: passes over the training photos",
                                       shown="60, or more for a small set: at least 2,000 steps")
    point_learning_rate: float = setting(1e-3, "points: Adam's learning rate of the points head")
    # outputs
    summaries_dir: Path | None = setting(None,
        "write TensorBoard scalars into a new run-<time> folder inside this folder (never deleted)",
        in_dir=True)
    report_dir: Path = setting(Path(model_dir.REPORT), "evaluation report of the test split", in_dir=True)
    output_graph: Path = setting(Path(model_dir.GRAPH), "frozen graph to write", in_dir=True)
    output_labels: Path = setting(Path(model_dir.LABELS), "labels file to write", in_dir=True)
    saved_model_dir: Path = setting(Path(model_dir.SAVED_MODEL), "SavedModel folder to write", in_dir=True)
    train_log: Path = setting(Path(model_dir.TRAIN_LOG), "training log to write", in_dir=True)
    final_tensor_name: str = setting(model_dir.FINAL_TENSOR, "name of the output softmax in the graph")


    def check(self) -> None:
        """Raise SettingError naming the first flag whose value cannot give a sound run.

        Called before any photo is read, so a typo costs nothing and never replaces a model.
        """
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise SettingError(message)

        for name in ("learning_rate", "point_learning_rate"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0,
                    f"--{name} must be a finite number above 0, not {value:g}")
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
        require(self.point_epochs is None or self.point_epochs >= 1,
                f"--point_epochs must be at least 1, not {self.point_epochs}")
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
        require(self.fine_tune_layers is None or layers == "all"
                or (layers.isdigit() and 1 <= int(layers) <= 10000),
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
