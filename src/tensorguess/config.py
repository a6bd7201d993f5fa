"""Every training setting and its default, in one place (retrain.py's names)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .modules import DEFAULT_MODULE


@dataclass
class TrainConfig:
    # data
    image_dir: Path = Path("data")
    testing_percentage: float = 10.0
    validation_percentage: float = 10.0
    # module
    tfhub_module: str = DEFAULT_MODULE
    input_size: int | None = None  # None: from the module's signature or the known-module table
    input_range: str | None = None  # None: "0,1", the TF Hub convention
    bottleneck_dir: Path = Path("bottlenecks")
    bottleneck_batch_size: int = 32
    # training
    how_many_training_steps: int = 4000
    learning_rate: float = 0.01
    train_batch_size: int = 100
    validation_batch_size: int = 100
    test_batch_size: int = -1
    eval_step_interval: int = 10
    random_seed: int | None = None  # None: drawn at random and written to train_log.json
    print_misclassified_test_images: bool = False
    # imbalance and calibration
    class_weights: str = "none"  # "balanced": weight the loss by inverse class frequency instead
    calibrate: str = "auto"  # temperature scaling on the validation split: auto, on or off
    # outputs
    summaries_dir: Path | None = None  # TensorBoard scalars; None: none written
    report_dir: Path = Path("report")
    output_graph: Path = Path("retrained_graph.pb")
    output_labels: Path = Path("retrained_labels.txt")
    saved_model_dir: Path = Path("saved_model")
    train_log: Path = Path("train_log.json")
    final_tensor_name: str = "final_result"

    def as_json(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}
