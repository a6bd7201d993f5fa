"""Hostile and broken input: graphs that would run as code, full disks, bad numbers, odd names."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import MOBILENET_V2, SUPERHEROES

from tensorguess import cli, strict_json
from tensorguess.config import SettingError, TrainConfig
from tensorguess.data.images import list_files, printable
from tensorguess.head.calibration import T_MIN, calibrate
from tensorguess.score import graph_check
from tensorguess.score.predict import Classifier
from tensorguess.sort import folder as sorting


def strict_load(text: str):
    """json.loads that refuses NaN and Infinity, as JavaScript's JSON.parse does."""
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def write_classifier(folder, graph_def, labels=("elsa", "darth vader")):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "retrained_graph.pb").write_bytes(graph_def.SerializeToString())
    (folder / "retrained_labels.txt").write_text("".join(f"{label}\n" for label in labels))
    return folder


def file_touching_graph(read_path, write_path):
    """A classifier-shaped graph that reads one file and writes another when final_result runs."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3], name="image_batch")
        mean = tf.reduce_mean(images, axis=[1, 2, 3])
        stolen = tf.io.read_file(str(read_path))
        written = tf.io.write_file(str(write_path), stolen)
        with tf.control_dependencies([written]):
            tf.nn.softmax(tf.stack([mean, -mean], axis=1), name="final_result")
    return graph.as_graph_def()


# --- graphs ------------------------------------------------------------------------------------

def test_a_graph_that_reads_and_writes_files_is_refused_before_it_runs(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's data")
    leak = tmp_path / "leaked.txt"
    folder = write_classifier(tmp_path / "tf_files", file_touching_graph(secret, leak))
    photo = sorted((SUPERHEROES / "elsa").iterdir())[0]

    assert cli.main(["guess", str(folder), str(photo)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "refusing to run" in err and str(folder / "retrained_graph.pb") in err
    assert "ReadFile" in err and "WriteFile" in err and "--trust_graph" in err
    assert not leak.exists()
    for command in (["sort", str(folder), str(photo.parent), str(tmp_path / "out")],
                    ["evaluate", str(folder), str(SUPERHEROES), str(tmp_path / "report")]):
        assert cli.main(command) == 1
        assert "refusing to run" in capsys.readouterr().err
    assert not leak.exists()

    # The expert's way out does what it says: the graph runs, file access and all.
    assert cli.main(["guess", str(folder), str(photo), "--trust_graph"]) == 0
    assert leak.read_text() == "the user's data"


def test_an_op_tensorflow_does_not_know_is_one_line_trusted_or_not(tmp_path, capsys):
    import tensorflow as tf

    graph_def = file_touching_graph(tmp_path / "a", tmp_path / "b")
    graph_def.node.add(name="mystery", op="TotallyMadeUpOp")
    folder = write_classifier(tmp_path / "tf_files", graph_def)
    photo = sorted((SUPERHEROES / "elsa").iterdir())[0]
    for extra in ([], ["--trust_graph"]):
        assert cli.main(["guess", str(folder), str(photo), *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert err == (f"tensor-guess: cannot run {folder / 'retrained_graph.pb'}: it uses operations "
                       f"TensorFlow {tf.__version__} does not know (TotallyMadeUpOp); it needs the "
                       "TensorFlow build that made it")


def test_ops_hidden_in_a_function_library_are_found(tmp_path):
    import tensorflow as tf

    graph_def = file_touching_graph(tmp_path / "a", tmp_path / "b")
    clean = tf.compat.v1.GraphDef()
    clean.node.extend(n for n in graph_def.node if n.op not in ("ReadFile", "WriteFile"))
    for node in clean.node:
        kept = [i for i in node.input if not i.lstrip("^").startswith(("ReadFile", "WriteFile"))]
        del node.input[:]
        node.input.extend(kept)
    assert graph_check.refusal(clean, "g.pb") is None
    function = clean.library.function.add()
    function.signature.name = "innocent"
    function.node_def.add(name="grab", op="MatchingFiles")
    message = graph_check.refusal(clean, "g.pb")
    assert "MatchingFiles" in message and "innocent/grab" in message
    # A call to a function the graph does not define cannot be checked: refused too.
    del clean.library.function[:]
    caller = clean.node.add(name="call", op="PartitionedCall")
    caller.attr["f"].func.name = "defined_elsewhere"
    assert "defined_elsewhere" in graph_check.refusal(clean, "g.pb")


def test_our_graphs_pass_the_check_for_both_shared_modules(trained):
    import tensorflow as tf

    from tensorguess.export import frozen
    from tensorguess.features import modules
    from tensorguess.head.train import FinalLayer

    base, _, _ = trained
    ours = tf.compat.v1.GraphDef()
    ours.ParseFromString((base / "retrained_graph.pb").read_bytes())
    assert graph_check.refusal(ours, "ours") is None
    spec, loaded = modules.resolve(str(MOBILENET_V2))
    layer = FinalLayer(np.zeros((1280, 2), np.float32), np.zeros(2, np.float32))
    v2 = frozen.classifier_graph(spec, loaded, layer, "final_result")
    assert graph_check.refusal(v2, "v2") is None


def test_a_graph_giving_nan_scores_reports_each_image_instead_of_scoring_it(tmp_path):
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3], name="image_batch")
        mean = tf.reduce_mean(images, axis=[1, 2, 3]) * float("nan")
        tf.nn.softmax(tf.stack([mean, -mean], axis=1), name="final_result")
    folder = write_classifier(tmp_path / "tf_files", graph.as_graph_def())
    photo = sorted((SUPERHEROES / "elsa").iterdir())[0]
    with Classifier(folder / "retrained_graph.pb", folder / "retrained_labels.txt") as classifier:
        (result,) = classifier.score_files([photo])
    assert "no usable scores" in result.reason


# --- an atomic write on a full disk -----------------------------------------------------------

def test_an_atomic_write_that_fills_the_disk_leaves_no_hidden_part_behind(tmp_path):
    """A real 64 KiB tmpfs (in a user and mount namespace of its own, as hostile.bats mounts
    one): a write of 200 KB fails with ENOSPC, and neither the target nor the temporary file
    beside it is left; the file that was there before is still whole."""
    import subprocess
    import sys
    import textwrap

    repo_src = Path(__file__).resolve().parents[2] / "src"
    disk = tmp_path / "disk"
    disk.mkdir()
    script = textwrap.dedent(f"""
        set -euo pipefail
        mount -t tmpfs -o size=64k tmpfs {disk}
        printf 'kept' > {disk}/model.pb
        PYTHONPATH={repo_src} {sys.executable} - <<'EOF'
        import errno, os
        from pathlib import Path
        from tensorguess.atomic_write import write_atomically
        try:
            write_atomically(Path("{disk}/model.pb"), b"x" * 200_000)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
        else:
            raise SystemExit("the write did not fail")
        print(sorted(os.listdir("{disk}")), Path("{disk}/model.pb").read_text())
        EOF
        """)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['model.pb']", "kept"]


# --- guessDir's manifest on a full disk --------------------------------------------------------

class FullDisk:
    """os.write that fails with ENOSPC from the n-th call on, the first failing call writing
    `partial` bytes first (a short write, as a real disk gives when it fills mid-record)."""

    def __init__(self, monkeypatch, fail_at: int, partial: int):
        self.calls, self.fail_at, self.partial = 0, fail_at, partial
        self.real = os.write
        monkeypatch.setattr(sorting.os, "write", self)

    def __call__(self, fd, data):
        self.calls += 1
        if self.calls < self.fail_at:
            return self.real(fd, data)
        if self.calls == self.fail_at and self.partial:
            return self.real(fd, bytes(data)[: self.partial])
        raise OSError(errno.ENOSPC, "No space left on device")


def check_dest(dest, source):
    """Every manifest line is a whole strict-JSON record; every copy has exactly one record."""
    text = (dest / sorting.MANIFEST).read_text()
    assert text == "" or text.endswith("\n")
    records = [strict_load(line) for line in text.splitlines()]
    copies = [r["copy"] for r in records if "copy" in r]
    assert len(copies) == len(set(copies))
    on_disk = sorted(p.name for p in dest.iterdir() if p.name != sorting.MANIFEST)
    assert sorted(copies) == on_disk, "a copy without a record, or a record without its copy"
    for record in records:
        if "copy" in record:
            assert (dest / record["copy"]).read_bytes() == (source / record["source"]).read_bytes()
    return records


@pytest.mark.parametrize(("fail_at", "partial"), [(1, 0), (2, 17), (3, 1), (4, 0)])
def test_a_disk_filling_while_the_manifest_is_written_loses_no_record(
        trained, tmp_path, monkeypatch, fail_at, partial):
    base, _, _ = trained
    source = tmp_path / "photos"
    source.mkdir()
    for i, photo in enumerate(sorted((SUPERHEROES / "elsa").iterdir())[:5]):
        shutil.copy(photo, source / f"{i}.jpg")
    (source / "junk.jpg").write_text("not a photo")
    dest = tmp_path / "dest"
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        full = FullDisk(monkeypatch, fail_at, partial)
        with pytest.raises(sorting.SortError, match=r"DEST is full .*stopped after \d+ of 6 photos"):
            sorting.sort(classifier, source, dest, warn=lambda line: None)
        check_dest(dest, source)
        monkeypatch.setattr(sorting.os, "write", full.real)  # space freed
        summary = sorting.sort(classifier, source, dest, warn=lambda line: None)
    records = check_dest(dest, source)
    assert sorted(r["source"] for r in records if "copy" in r) == [f"{i}.jpg" for i in range(5)]
    assert summary.already_sorted == 5 - summary.copied


def test_a_disk_filling_during_a_copy_leaves_no_partial_copy(trained, tmp_path, monkeypatch):
    base, _, _ = trained
    source = tmp_path / "photos"
    source.mkdir()
    for i, photo in enumerate(sorted((SUPERHEROES / "elsa").iterdir())[:3]):
        shutil.copy(photo, source / f"{i}.jpg")
    dest = tmp_path / "dest"
    real_copy = sorting.copy_into
    copies = []

    def copy_then_fill(src, target):
        copies.append(target)
        if len(copies) == 2:
            os.write(target.fd, b"half a photo")
            os.close(target.fd)
            target.path.unlink()  # what copy_into does with its partial file on an error
            raise OSError(errno.ENOSPC, "No space left on device")
        real_copy(src, target)

    monkeypatch.setattr(sorting, "copy_into", copy_then_fill)
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        with pytest.raises(sorting.SortError, match=r"stopped after 1 of 3 photos \(1 copied"):
            sorting.sort(classifier, source, dest, warn=lambda line: None)
        assert len(check_dest(dest, source)) == 1
        monkeypatch.setattr(sorting, "copy_into", real_copy)
        summary = sorting.sort(classifier, source, dest, warn=lambda line: None)
    assert (summary.copied, summary.already_sorted) == (2, 1)
    assert len(check_dest(dest, source)) == 3


def test_a_partial_last_line_from_an_older_run_is_removed_before_appending(trained, tmp_path):
    base, _, _ = trained
    source = tmp_path / "photos"
    source.mkdir()
    shutil.copy(sorted((SUPERHEROES / "elsa").iterdir())[0], source / "a.jpg")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / sorting.MANIFEST).write_text('{"source": "old.jpg", "error": "x"}\n{"source": "b.jp')
    warnings = []
    with Classifier(base / "retrained_graph.pb", base / "retrained_labels.txt") as classifier:
        sorting.sort(classifier, source, dest, warn=warnings.append)
    lines = (dest / sorting.MANIFEST).read_text().splitlines()
    assert [strict_load(line)["source"] for line in lines] == ["old.jpg", "a.jpg"]
    assert any("ended in a partial record (16 bytes" in w for w in warnings)


# --- numbers -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "value", "message"), [
    ("learning_rate", 0.0, "--learning_rate must be a finite number above 0"),
    ("learning_rate", -1.0, "--learning_rate must be a finite number above 0"),
    ("learning_rate", math.nan, "--learning_rate must be a finite number above 0, not nan"),
    ("learning_rate", math.inf, "--learning_rate must be a finite number above 0"),
    ("testing_percentage", -5.0, "--testing_percentage must be between 0 and 100"),
    ("validation_percentage", 101.0, "--validation_percentage must be between 0 and 100"),
    ("testing_percentage", math.nan, "--testing_percentage must be between 0 and 100"),
    ("testing_percentage", 60.0, "plus --validation_percentage must be under 100 (now 100)"),
    ("validation_batch_size", 0, "--validation_batch_size must be -1 (all) or at least 1"),
    ("test_batch_size", -2, "--test_batch_size must be -1 (all) or at least 1"),
    ("train_batch_size", 0, "--train_batch_size must be at least 1"),
    ("how_many_training_steps", 0, "--how_many_training_steps must be at least 1"),
    ("input_size", 0, "--input_size must be between 1 and 4096"),
    ("random_seed", -1, "--random_seed must be between 0"),
])
def test_each_bad_number_is_refused_naming_its_flag(flag, value, message):
    cfg = TrainConfig(validation_percentage=40.0 if flag == "testing_percentage" else 10.0)
    setattr(cfg, flag, value)
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cfg.check()


def test_strict_json_turns_non_finite_numbers_into_null():
    text = strict_json.dumps({"a": math.nan, "b": [1.5, -math.inf, {"c": math.inf}], "d": (2, "x")})
    assert strict_load(text) == {"a": None, "b": [1.5, None, {"c": None}], "d": [2, "x"]}


def test_a_temperature_stuck_at_its_bound_is_not_kept():
    truth = np.array([0, 1] * 20)
    logits = np.where(np.eye(2)[truth] > 0, 8.0, -8.0)  # every photo right, by a wide margin
    for mode in ("auto", "on"):
        result = calibrate(logits, truth, mode)
        assert result.temperature == 1.0 and not result.applied
        assert f"T={T_MIN:.3f}" in result.reason and "kept T = 1" in result.reason


# --- names and folders -------------------------------------------------------------------------

def test_printable_escapes_control_characters_only():
    assert printable("a\nb.jpg") == "a\\nb.jpg"
    assert printable("tab\tand\x1b[31mred") == "tab\\tand\\x1b[31mred"
    assert printable("élan vital.jpg") == "élan vital.jpg"


def test_list_files_follows_symlinked_folders_and_names_loops(tmp_path):
    root = tmp_path / "photos"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.jpg").write_bytes(b"a")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "b.jpg").write_bytes(b"b")
    (root / "linked").symlink_to(outside)
    (root / "real" / "loop").symlink_to(root)
    warnings = []
    found = [p.relative_to(root).as_posix() for p in list_files(root, warnings.append)]
    assert found == ["linked/b.jpg", "real/a.jpg"]
    assert len(warnings) == 1 and "real/loop" in warnings[0] and "listed already" in warnings[0]


def test_a_photo_whose_name_is_not_utf8_is_trained_on_reported_and_sorted(tmp_path):
    """A Latin-1 name from an old camera or archive: Python carries its byte as a lone surrogate,
    which the stat index (SQLite), the split's hash and the HTML report used to refuse, ending
    the whole training with UnicodeEncodeError."""
    from conftest import MOBILENET_V1, train_config

    from tensorguess.data.dataset import split_key
    from tensorguess.retrain import retrain

    data = tmp_path / "data"
    for label, folder in (("elsa", "elsa"), ("vader", "darth_vader")):
        (data / label).mkdir(parents=True)
        for photo in sorted((SUPERHEROES / folder).iterdir())[:10]:
            shutil.copy(photo, data / label / photo.name)
    first = sorted((data / "elsa").iterdir())[0]
    odd = os.fsdecode(os.fsencode(data / "elsa") + b"/caf\xe9.jpg")
    os.rename(first, odd)
    assert split_key("caf\udce9.jpg") != split_key("caf\u00e9.jpg"), "its own bytes, not a guess"
    cfg = train_config(tmp_path / "tf_files", data, tfhub_module=str(MOBILENET_V1),
                       how_many_training_steps=20)
    log = retrain(cfg, say=lambda line: None, warn=lambda line: None)
    assert log["bottlenecks"]["computed"] == 20
    html = (tmp_path / "tf_files" / "report" / "report.html").read_text()
    assert "<html" in html.lower()
    with Classifier(tmp_path / "tf_files" / "retrained_graph.pb",
                    tmp_path / "tf_files" / "retrained_labels.txt") as classifier:
        summary = sorting.sort(classifier, data / "elsa", tmp_path / "sorted", warn=lambda line: None)
    assert summary.copied == 10
    records = [json.loads(line) for line in (tmp_path / "sorted" / sorting.MANIFEST).read_text().splitlines()]
    assert "caf\udce9.jpg" in {r["source"] for r in records}
