"""The evaluation report on real graphs: sign-digits with one class cut to a handful of photos."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import SIGN_DIGITS, SUPERHEROES, train_config
from PIL import Image
from test_metrics import assert_matches_scikit_learn

from tensorguess import cli
from tensorguess.evaluate import EvaluationError, evaluate_folder, graph_temperature, labelled_files
from tensorguess.predict import Classifier
from tensorguess.report import REPORT_FILES, ReportError, build, check_out_dir

SMALL_CLASS, SMALL_SIZE, PER_CLASS, HELD_OUT = "3", 4, 45, 12
ISSUE_KEYS = {"n", "accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "ece", "brier",
              "misclassified", "unreadable_files"}


def link_photos(target: Path, start: int, count: dict[str, int] | int) -> Path:
    """target/<digit>/ holding symlinks to sign-digits photos [start, start+count) of each digit."""
    for folder in sorted(p for p in SIGN_DIGITS.iterdir() if p.is_dir()):
        wanted = count if isinstance(count, int) else count.get(folder.name, PER_CLASS)
        (target / folder.name).mkdir(parents=True)
        for photo in sorted(folder.iterdir())[start:start + wanted]:
            (target / folder.name / photo.name).symlink_to(photo)
    return target


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A classifier trained on imbalanced sign-digits, and a held-out labelled folder."""
    from tensorguess.retrain import retrain

    base = tmp_path_factory.mktemp("digits")
    link_photos(base / "data", 0, {SMALL_CLASS: SMALL_SIZE})
    held_out = link_photos(base.parent / f"{base.name}-held out", PER_CLASS, HELD_OUT)
    (held_out / "5" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (held_out / "README.txt").write_text("these photos were not trained on")
    lines: list[str] = []
    log = retrain(train_config(base, base / "data"), say=lines.append, warn=lines.append)
    return base, log, lines, held_out


def test_training_writes_the_test_report_and_warns_of_the_imbalance(digits):
    base, log, lines, _ = digits
    report = json.loads((base / "report" / "report.json").read_text())
    assert ISSUE_KEYS <= set(report)
    assert report["n"] == log["test_n"] == sum(map(sum, report["confusion_matrix"]["matrix"]))
    assert report["accuracy"] == pytest.approx(log["final_test_accuracy"])
    assert report["confusion_matrix"]["labels"] == [str(d) for d in range(10)]
    assert set(report["per_class"]["0"]) == {"precision", "recall", "f1", "support"}
    for name in REPORT_FILES:
        assert (base / "report" / name).stat().st_size > 1000, name
    warning = f"warning: imbalanced classes: '0' has {PER_CLASS} images, '3' {SMALL_SIZE} (11x)"
    assert f"tensor-guess: {warning}" in " ".join(lines)
    table = lines.index("label  precision  recall     f1  support")
    assert [line.split()[0] for line in lines[table + 1:table + 11]] == [str(d) for d in range(10)]
    assert lines[table + 4].split()[-1] == str(log["split_sizes_per_class"]["testing"]["3"])
    for wrong in report["misclassified"]:
        assert (base / "data" / wrong["file"]).exists() and not Path(wrong["file"]).is_absolute()


def test_temperature_is_fitted_on_validation_and_in_the_exported_graph(digits):
    base, log, lines, _ = digits
    fit = log["calibration"]
    assert fit["applied"] and fit["nll_after"] <= fit["nll_before"]
    assert any(line.startswith(f"Calibration: temperature {fit['temperature']:.3f} fitted on "
                               f"{fit['validation_n']} validation images") for line in lines)
    report = json.loads((base / "report" / "report.json").read_text())
    assert report["calibration"]["temperature"] == fit["temperature"]
    assert report["calibration"]["ece_before"] != report["calibration"]["ece_after"]
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        assert graph_temperature(classifier) == pytest.approx(fit["temperature"], rel=1e-6)


def test_evaluate_agrees_with_scikit_learn_and_counts_every_image_once(digits, capsys):
    base, _, _, held_out = digits
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        evaluation = evaluate_folder(classifier, held_out, "graph", warn=print, show_progress=False)
    report = build(evaluation)
    predicted = evaluation.probabilities.argmax(axis=1)
    assert_matches_scikit_learn(report, evaluation.truth, predicted, evaluation.labels)
    in_class_folders = [p for p in held_out.rglob("*") if p.parent != held_out and not p.is_dir()]
    assert report["n"] + len(report["unreadable_files"]) == len(in_class_folders) == 10 * HELD_OUT + 1
    assert sorted(map(str, evaluation.paths)) == sorted(
        str(p) for p in in_class_folders if p.name != "broken.jpg")
    assert report["unreadable_files"][0]["file"] == "5/broken.jpg"
    names = [item["file"] for item in report["misclassified"]]
    assert len(names) == len(set(names)) == report["n"] - int(np.trace(report["confusion_matrix"]["matrix"]))
    scores = [item["score"] for item in report["misclassified"]]
    assert scores == sorted(scores, reverse=True)
    err = capsys.readouterr().out
    assert "ignoring 1 file(s) directly in" in err and "skipping" in err and "broken.jpg" in err


def test_evaluate_command_writes_the_report_and_prints_the_summary(digits, tmp_path, capsys):
    base, _, _, held_out = digits
    assert cli.main(["evaluate", str(base), str(held_out)]) == 0
    out = capsys.readouterr().out.splitlines()
    folder = base / f"report-{held_out.name}"
    report = json.loads((folder / "report.json").read_text())
    assert out[0] == f"Evaluation accuracy = {report['accuracy'] * 100:.1f}% (N={10 * HELD_OUT})"
    assert out[1].startswith("Macro F1 = ") and "ECE = " in out[1]
    assert "label  precision  recall     f1  support" in out
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES[:4])
    calibration = report["calibration"]
    assert calibration["ece_after"] == report["ece"] and calibration["ece_before"] is not None
    render_in_chromium(folder, tmp_path)


def render_in_chromium(folder: Path, tmp_path: Path) -> None:
    """Open report.html in headless Chromium: every image must load; keep a screenshot."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    # A missing browser fails the test: a report nobody checked renders is not a tested report.
    assert chromium, "headless Chromium is needed for this test: apt-get install chromium (.ci/run does)"
    probe = folder / "probe.html"
    page = (folder / "report.html").read_text()
    assert "file://" not in page and str(folder) not in page  # only relative or embedded images
    script = ("<script>addEventListener('load', () => document.body.dataset.images = JSON.stringify("
              "[...document.images].map(i => [i.id || i.className, i.naturalWidth])));</script>")
    probe.write_text(page.replace("</body>", script + "</body>"))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    probe.unlink()
    loaded = json.loads(html.unescape(re.search(r'data-images="([^"]*)"', dom).group(1)))
    widths = dict(loaded)
    assert widths["confusion_matrix"] > 300 and widths["reliability"] > 300
    thumbnails = [width for name, width in loaded if name == "thumb"]
    assert thumbnails and min(thumbnails) > 0
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1100,2400",
                    (folder / "report.html").as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1100) and pixels.std() > 10  # drawn, not a blank page


def test_folders_that_match_no_label_are_one_clear_error(digits, tmp_path, capsys):
    base, _, _, _ = digits
    labelled = tmp_path / "labelled"
    for name in ("0", "1", "eleven", "Twelve_X"):
        (labelled / name).mkdir(parents=True)
    with pytest.raises(EvaluationError, match=r"2 folder\(s\) .* 'Twelve_X' \(label 'twelve x'\), 'eleven'"):
        labelled_files(labelled, [str(d) for d in range(10)])
    assert cli.main(["evaluate", str(base), str(labelled), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tensor-guess: 2 folder(s) of ") and "'eleven'" in err and "'Twelve_X'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_existing_report_folder_keeps_other_files_and_refuses_foreign_ones(digits, tmp_path):
    base, _, _, held_out = digits
    small = link_photos(tmp_path / "small", 100, 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(["evaluate", str(base), str(small), str(out)]) == 0
    first = (out / "report.json").stat().st_ino
    assert cli.main(["evaluate", str(base), str(small), str(out)]) == 0  # our own files are replaced
    assert (out / "notes.txt").read_text() == "mine" and (out / "report.json").stat().st_ino != first
    (out / "reliability.png").write_bytes(b"a picture of mine")
    with pytest.raises(ReportError, match="already holds reliability.png that tensor-guess did not write"):
        check_out_dir(out)
    assert cli.main(["evaluate", str(base), str(small), str(out)]) == 1
    assert (out / "reliability.png").read_bytes() == b"a picture of mine"
    assert cli.main(["evaluate", str(base), str(small), str(small / "0")]) == 2  # inside the photos


def test_legacy_retrain_graphs_are_evaluated_without_calibration(trained, tmp_path):
    from test_legacy_and_cli import legacy_graph

    base, _, _ = trained
    folder = legacy_graph(tmp_path, base, "DecodeJpeg")
    labelled = tmp_path / "heroes"
    for name in ("darth_vader", "elsa"):
        (labelled / name).mkdir(parents=True)
        for photo in sorted((SUPERHEROES / name).iterdir())[-4:]:
            (labelled / name / photo.name).symlink_to(photo)
    assert cli.main(["evaluate", str(folder), str(labelled)]) == 0
    report = json.loads((folder / "report-heroes" / "report.json").read_text())
    assert report["n"] == 8 and report["calibration"] is None
    assert report["per_class"]["darth vader"]["support"] == 4  # the folder darth_vader, by the label rule


def test_balanced_class_weights_and_summaries_that_never_delete(digits, tmp_path):
    import tensorflow as tf

    from tensorguess.retrain import retrain

    base, _, _, _ = digits
    summaries = tmp_path / "runs"
    summaries.mkdir()
    (summaries / "keep.txt").write_text("an earlier run's notes")
    cfg = train_config(tmp_path, base / "data", bottleneck_dir=base / "bottlenecks",
                       how_many_training_steps=200, eval_step_interval=50, class_weights="balanced",
                       summaries_dir=summaries, calibrate="off")
    lines: list[str] = []
    log = retrain(cfg, say=lines.append, warn=lines.append)
    weights = log["class_weights"]
    assert weights["3"] > 5 * weights["0"] and log["calibration"]["temperature"] == 1.0
    assert "the loss is weighted by inverse class frequency" in " ".join(lines)
    assert (summaries / "keep.txt").read_text() == "an earlier run's notes"
    (run,) = summaries.glob("run-*")
    values: dict[tuple[str, str], list[int]] = {}
    for split in ("train", "validation"):
        for events in (run / split).iterdir():
            for event in tf.compat.v1.train.summary_iterator(str(events)):
                for value in event.summary.value:
                    assert value.metadata.plugin_data.plugin_name == "scalars"
                    values.setdefault((split, value.tag), []).append(event.step)
    assert set(values) == {(s, t) for s in ("train", "validation") for t in ("accuracy", "cross_entropy")}
    assert values[("validation", "accuracy")] == [point["step"] for point in log["steps"]]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["calibration"]["ece_before"] == report["calibration"]["ece_after"]
    assert Image.open(tmp_path / "report" / "training_curves.png").info["Software"] == "tensor-guess"


def test_evaluating_a_folder_with_nothing_readable_writes_the_report_and_fails(digits, tmp_path, capsys):
    base, _, _, _ = digits
    labelled = tmp_path / "labelled"
    (labelled / "7").mkdir(parents=True)
    (labelled / "7" / "empty.jpg").write_bytes(b"")
    assert cli.main(["evaluate", str(base), str(labelled), str(tmp_path / "out")]) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["n"] == 0 and [u["file"] for u in report["unreadable_files"]] == ["7/empty.jpg"]
    assert f"tensor-guess: no photo in {labelled} could be scored (1 unreadable)" in capsys.readouterr().err
