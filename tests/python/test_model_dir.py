"""model_dir: DIR's names and the training log, read and written in one place."""

from __future__ import annotations

import json
import os

from tensorguess import model_dir
from tensorguess.model_dir import TrainLog


def staged(tmp_path, log: TrainLog) -> dict:
    written = {}
    log.stage(lambda path, data: written.__setitem__(path.name, data), tmp_path / model_dir.TRAIN_LOG,
              tmp_path)
    return written


def test_a_log_is_written_with_its_kind_and_read_back(tmp_path):
    log = TrainLog.of_run({"flags": {"image_dir": "/photos/a b\nc"}, "calibration": {"temperature": 1.5},
                           "final_test_accuracy": float("nan")})
    written = staged(tmp_path, log)
    assert list(json.loads(written[model_dir.TRAIN_LOG]))[0] == "kind"
    assert json.loads(written[model_dir.TRAIN_LOG])["final_test_accuracy"] is None  # strict JSON
    assert written[model_dir.MODEL_KIND] == b"classes\n"
    assert written[model_dir.TRAIN_INPUTS] == b"/photos/a b\nc\0"  # any path, NUL-terminated
    (tmp_path / model_dir.TRAIN_LOG).write_bytes(written[model_dir.TRAIN_LOG])
    read = TrainLog.read(tmp_path / model_dir.TRAIN_LOG)
    assert read.kind == "classes" and read.temperature == 1.5 and read.calibration == {"temperature": 1.5}


def test_a_log_of_the_previous_version_reads_as_classes(tmp_path):
    path = tmp_path / model_dir.TRAIN_LOG
    path.write_text(json.dumps({"flags": {"labels_csv": "/sets/labels.csv", "image_dir": "/x/data"}}))
    log = TrainLog.read(path)
    assert log.kind == model_dir.CLASSES and log.temperature is None and log.calibration is None
    assert log.inputs == ["/sets"]  # a labels CSV: its folder, which its paths are relative to
    assert model_dir.read_kind(tmp_path / model_dir.MODEL_KIND) == model_dir.CLASSES


def test_what_is_not_a_log_reads_as_none(tmp_path):
    assert TrainLog.read(tmp_path / "missing.json") is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert TrainLog.read(tmp_path / "list.json") is None
    (tmp_path / "broken.json").write_text("{")
    assert TrainLog.read(tmp_path / "broken.json") is None
    os.mkfifo(tmp_path / "fifo.json")
    assert TrainLog.read(tmp_path / "fifo.json") is None  # refused, never waited on


def test_the_fields_commands_read_have_the_value_an_older_or_odd_log_stands_for():
    empty = TrainLog({})
    assert (empty.labels, empty.module, empty.split_digests, empty.split_sizes, empty.steps) == (
        [], {}, {}, {}, [])
    assert empty.fine_tune is None and empty.data_checks == {} and empty.bottleneck_dir is None
    assert empty.labels_csv is None and str(empty.image_dir) == model_dir.IMAGE_DIR
    odd = TrainLog({"labels": "elsa", "module": [1], "split_digests": None, "steps": {}, "fine_tune": {},
                    "data_checks": "x", "flags": {"bottleneck_dir": "/cache", "image_dir": "/photos"}})
    assert (odd.labels, odd.module, odd.split_digests, odd.steps, odd.fine_tune, odd.data_checks) == (
        [], {}, {}, [], None, {})
    assert str(odd.bottleneck_dir) == "/cache" and str(odd.image_dir) == "/photos"
    assert odd.inputs == ["/photos"]
    full = TrainLog({"labels": ["a", "b"], "split_digests": {"testing": ["d1"]}, "fine_tune": {"epochs": 2},
                     "steps": [{"step": 0}], "data_checks": {"near_duplicate_threshold": 0.95}})
    assert full.labels == ["a", "b"] and full.split_digests == {"testing": ["d1"]}
    assert full.fine_tune == {"epochs": 2} and full.steps == [{"step": 0}]
    assert full.data_checks["near_duplicate_threshold"] == 0.95
