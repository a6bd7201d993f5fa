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
from tensorguess.model_dir import TrainLog
from tensorguess.report.document import REPORT_FILES, ReportError, build, check_out_dir
from tensorguess.report.evaluate import EvaluationError, evaluate_folder, graph_temperature, labelled_files
from tensorguess.score.predict import Classifier

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


def test_small_classes_are_named_before_training_and_their_recall_given_an_interval(digits):
    base, _, lines, _ = digits
    assert (f"tensor-guess: warning: few photos: '{SMALL_CLASS}' has {SMALL_SIZE} (under 10): it is "
            "learned from a handful") in " ".join(lines)
    report = json.loads((base / "report" / "report.json").read_text())
    tiny = report["recall_intervals"][SMALL_CLASS]
    # Wilson's 95% interval of k right of n, by hand: k = n gives [n / (n + 1.96^2), 1], k = 0
    # [0, 1.96^2 / (n + 1.96^2)]; 1 of 2: 0.5 -+ 1.96 sqrt(1/8 + 1.96^2/16) / (1 + 1.96^2/2).
    by_hand = {(0, 1): (0.0, 0.7935), (1, 1): (0.2065, 1.0),
               (0, 2): (0.0, 0.6576), (1, 2): (0.0945, 0.9055), (2, 2): (0.3424, 1.0)}
    assert (tiny["low"], tiny["high"]) == pytest.approx(by_hand[tiny["hits"], tiny["support"]], abs=1e-4)
    # Every class here has 4 or 5 test photos: none can be judged, and the report says so.
    assert report["too_few_to_judge"] == [str(d) for d in range(10)]
    assert any(line.startswith(f"Too few photos to judge: '0': {report['per_class']['0']['support']} "
                               "photo(s), recall ") for line in lines)



def test_the_logit_adjustment_is_in_the_exported_graph(digits):
    base, log, _, _ = digits
    # 36 training photos against 2: the default adjusts, and the graph decides as the layer did.
    offsets = log["logit_adjustment"]
    assert offsets[SMALL_CLASS] == max(offsets.values()) > offsets["0"] + 1.5 * np.log(10)
    report = json.loads((base / "report" / "report.json").read_text())
    wrong = report["misclassified"]
    assert wrong, "the fixture's classifier should miss a few test photos"
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        scored = list(classifier.score_files([base / "data" / item["file"] for item in wrong]))
    labels = report["confusion_matrix"]["labels"]
    for item, result in zip(wrong, scored, strict=True):
        assert labels[int(np.argmax(result.scores))] == item["predicted"]
        assert result.scores[labels.index(item["predicted"])] == pytest.approx(item["score"], abs=2e-3)


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


def synthetic_evaluation(root: Path, scores: np.ndarray, truth: np.ndarray, labels: list[str],
                         paths: list[Path] | None = None):
    from tensorguess.report.document import Evaluation

    return Evaluation(labels=labels, truth=truth, probabilities=scores,
                      paths=paths or [root / labels[t] / f"{i}.jpg" for i, t in enumerate(truth)],
                      root=root, source="a test", classifier="none")


def test_many_classes_list_the_worst_recall_first_and_name_the_classes_never_predicted(tmp_path):
    """The MPII project's 20 classes: one predicted for everything hid behind a single accuracy."""
    from tensorguess.report.document import console_lines, render_html

    labels = [f"pose {i:02d}" for i in range(20)]
    truth = np.repeat(np.arange(20), 10)
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 0.1, (200, 20))
    scores[np.arange(200), truth] += np.where(truth < 14, 1.0, 0.0)  # 14 classes found
    scores[truth >= 14, 5] += 2.0  # the last 6 all guessed as 'pose 05'
    scores[truth >= 14, truth[truth >= 14]] += 0.5  # second best: their top 5 still holds them
    scores[:3, 5] += 3.0  # and a few mistakes the other way, so recall differs within the found
    scores /= scores.sum(axis=1, keepdims=True)
    report = build(synthetic_evaluation(tmp_path, scores, truth, labels))
    never = [f"pose {i}" for i in range(14, 20)]
    assert report["never_predicted"] == never
    assert report["top5_accuracy"] == 1.0 and report["accuracy"] == pytest.approx(137 / 200)
    lines = console_lines(report)
    assert lines[1] == "Top-1 accuracy = 68.5%, top-5 accuracy = 100.0%"
    header = lines.index("Per class, worst recall first (20 classes):")
    assert lines[header + 1] == "label    precision  recall     f1  support"
    rows = [line.split() for line in lines[header + 2:header + 22]]
    recalls = [float(row[3]) for row in rows]
    assert recalls == sorted(recalls) and recalls[:6] == [0.0] * 6 and recalls[6] == 0.7
    assert [" ".join(row[:2]) for row in rows[:7]] == never + ["pose 00"]
    assert lines[-1] == ("Never predicted: " + ", ".join(f"'{label}'" for label in never)
                         + ": present in these images, but no image was guessed as them")
    page = render_html(report, [], {})
    assert "<tr><td>top-5 accuracy</td><td>100.0%</td></tr>" in page
    assert f'id="never_predicted">Never predicted: {html.escape(", ".join(map(repr, never)))}' in page
    assert "20 classes, the worst recall first." in page
    table = page[page.index("<h2>Per class</h2>"):page.index("<h2>Confusion matrix</h2>")]
    assert table.index("pose 19") < table.index("pose 00") < table.index("pose 01")

    few = build(synthetic_evaluation(tmp_path, scores[:40, :5] / scores[:40, :5].sum(1, keepdims=True),
                                     np.minimum(truth[:40], 4), labels[:5]))
    assert few["top5_accuracy"] is None and "top-5" not in render_html(few, [], {})
    assert not any(line.startswith(("Top-1", "Per class, worst")) for line in console_lines(few))


def test_report_html_shows_the_data_checks_with_photos_and_survives_moved_ones(tmp_path):
    from tensorguess.report.document import write

    vader, elsa = (sorted((SUPERHEROES / name).iterdir()) for name in ("darth_vader", "elsa"))
    scored = vader[:3] + elsa[:3]
    truth = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([[0.9, 0.1]] * 3 + [[0.2, 0.8], [0.3, 0.7], [0.95, 0.05]])  # one mistake
    evaluation = synthetic_evaluation(SUPERHEROES, scores, truth, ["darth vader", "elsa"], scored)
    name = evaluation.name
    moved = "elsa/moved since.jpg"
    checks = {
        "near_duplicate_threshold": 0.95,
        "exact_duplicates_across_labels": [
            [{"file": name(vader[10]), "label": "darth vader"}, {"file": name(elsa[10]), "label": "elsa"}],
            [{"file": name(vader[11]), "label": "darth vader"}, {"file": name(elsa[11]), "label": "elsa"},
             {"file": moved, "label": "elsa"}],
        ],
        "near_duplicate_groups": [[name(p) for p in vader[20:28]], [name(elsa[20]), moved],
                                  [name(elsa[21]), name(elsa[22])]],
        "suspected_label_errors": [
            {"file": name(elsa[30]), "given": "elsa", "suggested": "darth vader", "score": 0.97},
            {"file": moved, "given": "elsa", "suggested": "darth vader", "score": 0.91},
            {"file": name(vader[30]), "given": "darth vader", "suggested": "elsa", "score": 0.885},
        ],
        "split_notes": ["2 near-duplicate groups were kept on one side of the split"],
    }
    log = {"steps": [{"step": s, "train_accuracy": 0.9, "cross_entropy": 0.3, "validation_accuracy": 0.8,
                      "validation_cross_entropy": 0.4} for s in (0, 10)],
           "split_sizes": {"training": 300}, "data_checks": checks}
    out = tmp_path / "report"
    write(out, evaluation, train_log=TrainLog(log))
    page = (out / "report.html").read_text()
    section = page[page.index('<h2 id="data_checks">Data checks</h2>'):page.index("<h2>What the numbers")]
    assert "<tr><td>identical photos under different labels</td><td>2</td></tr>" in section
    assert "<tr><td>groups of near-duplicates (similarity threshold 0.95)</td><td>3</td></tr>" in section
    assert "<tr><td>photos in the largest group</td><td>8</td></tr>" in section
    assert "<tr><td>suspected label errors</td><td>3</td></tr>" in section
    assert "Near-duplicates (3 groups, the largest of 8)" in section and "8 photos, 2 not drawn" in section
    for copies in checks["exact_duplicates_across_labels"]:
        for copy in copies:
            assert f"{html.escape(copy['file'])} (<b>{html.escape(copy['label'])}</b>)" in section
    for item in checks["suspected_label_errors"]:
        assert (f"{html.escape(item['file'])}<br>given: <b>{item['given']}</b><br>suggested: "
                f"<b>{item['suggested']}</b> ({item['score']:.3f})") in section
    assert "2 near-duplicate groups were kept on one side of the split" in section
    # Drawn: 6 + 1 + 2 near-duplicates and 2 suspects; the moved photo, twice, is a note instead.
    assert section.count('<img class="thumb"') == 11 and section.count("(not readable now)") == 2
    assert f'alt="{html.escape(name(elsa[30]))}"' in section
    mistakes = page[page.index("<h2>Mistakes (1)</h2>"):page.index('<h2 id="data_checks">')]
    assert mistakes.count('<img class="thumb"') == 1
    render_in_chromium(out, tmp_path)

    del log["data_checks"]
    write(out, evaluation, train_log=TrainLog(log))
    assert "Data checks" not in (out / "report.html").read_text()
