"""train: retrain the final layer (and optionally the module's last layers) on DIR's photos."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

from tensorguess import kinds
from tensorguess.commands.common import require_dir, warn
from tensorguess.commands.settings import READ_AS, setting_help
from tensorguess.config import SettingError, TrainConfig
from tensorguess.errors import UsageError
from tensorguess.model_dir import CLASSES, KEYPOINTS, POINTS

DESCRIPTION = ("Retrain a classifier on DIR/data/<category>/ images, or, when DIR/keypoints.json exists "
               "or --keypoints names a file, a points model on the photos it labels. Relative paths given "
               "to flags are taken inside DIR.")

def add_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("dir", type=Path, help="the tf_files folder")
    for item in fields(TrainConfig):
        flag = f"--{item.name}"
        if isinstance(item.default, bool):
            train.add_argument(flag, action="store_true", help=setting_help(item))
            continue
        meta = item.metadata
        extra = {"choices": meta["choices"]} if meta["choices"] else {}
        if meta["bare"] is not None:
            extra.update(nargs="?", const=meta["bare"])
        read_as = READ_AS[str(item.type).split(" | ")[0]]
        train.add_argument(flag, type=read_as, default=None, help=setting_help(item), **extra)
    train.add_argument("--export", metavar="FORMATS", help="after training, export these formats "
                       "as export.sh does (comma-separated: tflite, tflite-int8, coreml)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """Flags over TFHUB_MODULE over defaults; relative paths inside DIR."""
    base = args.dir
    cfg = TrainConfig()
    env_module = os.environ.get("TFHUB_MODULE")
    if env_module:
        cfg.tfhub_module = env_module
    for item in fields(TrainConfig):
        value = getattr(args, item.name)
        if item.metadata["in_dir"]:
            chosen = value if value is not None else getattr(cfg, item.name)
            value = None if chosen is None else base / chosen
        if value is not None and value is not False:
            setattr(cfg, item.name, value)
    # The flags given, even at their defaults: --recipe_mode auto leaves the settings they name as given.
    cfg.given_flags = frozenset(item.name for item in fields(TrainConfig) if _given(getattr(args, item.name)))
    try:
        cfg.check()
    except SettingError as error:
        raise UsageError(str(error)) from error
    return cfg


def _given(value) -> bool:
    """Whether argparse read the flag: a switch left off is False, any other flag left out None
    (a 0 given is a value, not an absence, hence `is`)."""
    return value is not None and value is not False


def run(args) -> int:
    from tensorguess.commands.export import export_formats

    require_dir(args.dir)
    cfg = train_config(args)
    if cfg.keypoints is None and (args.dir / KEYPOINTS).is_file():
        cfg.keypoints = args.dir / KEYPOINTS
    kind = kinds.named(POINTS if cfg.keypoints is not None else CLASSES)
    if kind.name == POINTS:
        print(f"Training a points model on the points labelled in {cfg.keypoints}", flush=True)
        if args.export:
            raise UsageError("--export: exporting a points model to TFLite or Core ML is not available yet; "
                             "its SavedModel and .pb are written by train")
    chosen = export_formats(args.export) if args.export else None  # checked before training
    if cfg.engine == "ray":
        from tensorguess.engine.choice import require_ray

        require_ray()  # before a photo is read
    kind.function("train")(cfg)
    if chosen:
        kind.function("export")(args.dir, chosen, graph=str(cfg.output_graph),
                                labels_name=str(cfg.output_labels), final_tensor_name=cfg.final_tensor_name,
                                report_dir=cfg.report_dir, warn=warn)
    return 0
