"""Graphs made by the old retrain.py, and the command line's errors and output."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import MOBILENET_V1, SUPERHEROES

from tensorguess import cli
from tensorguess.score.predict import Classifier, ClassifierError


def legacy_graph(tmp_path, trained_base, decode_op_name: str):
    """A retrain.py-style graph: DecodeJpeg/contents -> DecodeJpeg -> resize -> net -> final_result."""
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    from tensorguess.export import frozen
    from tensorguess.features import modules

    ours = tf.compat.v1.GraphDef()
    ours.ParseFromString((trained_base / "retrained_graph.pb").read_bytes())
    consts = {n.name: tensor_util.MakeNdarray(n.attr["value"].tensor) for n in ours.node if n.op == "Const"}
    weights, biases = consts["final_training_ops/weights"], consts["final_training_ops/biases"]
    spec, loaded = modules.resolve(str(MOBILENET_V1))
    module_graph, module_input, module_output = frozen.frozen_module(spec, loaded)
    with tf.Graph().as_default() as graph:
        contents = tf.compat.v1.placeholder(tf.string, [], name="DecodeJpeg/contents")
        decoded = tf.raw_ops.DecodeJpeg(contents=contents, channels=3, name=decode_op_name)
        batch = tf.compat.v1.image.resize_bilinear(tf.expand_dims(tf.cast(decoded, tf.float32), 0),
                                                   [224, 224]) / 255.0
        (features,) = tf.compat.v1.import_graph_def(module_graph, input_map={module_input: batch},
                                                    return_elements=[module_output])
        tf.nn.softmax(tf.matmul(features, weights) + biases, name="final_result")
    folder = tmp_path / decode_op_name
    folder.mkdir()
    (folder / "retrained_graph.pb").write_bytes(graph.as_graph_def().SerializeToString())
    shutil.copy(trained_base / "retrained_labels.txt", folder / "retrained_labels.txt")
    return folder


@pytest.mark.parametrize(("decode_op_name", "mode"), [("DecodeJpeg", "pixels"), ("decode", "bytes")])
def test_old_retrain_graphs_still_guess(trained, tmp_path, decode_op_name, mode):
    base, _, _ = trained
    folder = legacy_graph(tmp_path, base, decode_op_name)
    elsa = sorted((SUPERHEROES / "elsa").iterdir())[:2]
    png = tmp_path / "elsa.png"
    from PIL import Image

    Image.open(elsa[0]).save(png)
    with Classifier(folder / "retrained_graph.pb", folder / "retrained_labels.txt") as classifier:
        assert classifier.mode == mode
        notes = tmp_path / "notes.jpg"
        notes.write_text("not a photo")
        results = list(classifier.score_files([*elsa, notes, png]))
        assert [classifier.ranked(r.scores)[0][0] for r in results[:2]] == ["elsa", "elsa"]
        assert "not an image" in results[2].reason
        assert classifier.ranked(results[3].scores)[0][0] == "elsa"


def test_labels_that_do_not_match_the_graph_are_a_clear_error(trained, tmp_path):
    base, _, _ = trained
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    with pytest.raises(ClassifierError, match="3 labels but .* scores 2 classes"):
        Classifier(base / "retrained_graph.pb", tmp_path / "labels.txt")


def make_set(root, sizes: dict[str, int]):
    photos = sorted((SUPERHEROES / "elsa").iterdir())
    for folder, count in sizes.items():
        (root / "data" / folder).mkdir(parents=True)
        for index in range(count):
            shutil.copy(photos[index], root / "data" / folder / f"{index}.jpg")


@pytest.mark.parametrize(
    ("sizes", "message"),
    [({"Big_Class": 5, "Lonely One": 1}, "fewer in: 'Lonely One' (1)"),
     ({"only": 5}, "at least 2 categories"),
     ({"Iron Man": 3, "iron-man": 3}, "both give the label 'iron man'")],
)
def test_train_errors_name_the_folders(tmp_path, capsys, sizes, message):
    make_set(tmp_path, sizes)
    code = cli.main(["train", str(tmp_path), "--tfhub_module", str(MOBILENET_V1)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("tensor-guess: ") and message in err and len(err.strip().splitlines()) == 1


def test_train_of_a_missing_folder_is_a_usage_error(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_unreadable_training_files_are_skipped_and_counted(tmp_path, capsys):
    make_set(tmp_path, {"a": 4, "b": 4})
    (tmp_path / "data" / "a" / "empty.jpg").write_bytes(b"")
    (tmp_path / "data" / "b" / "text.png").write_text("hello")
    code = cli.main(["train", str(tmp_path), "--tfhub_module", str(MOBILENET_V1),
                     "--how_many_training_steps", "5", "--random_seed", "1"])
    assert code == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "empty.jpg: the file is empty" in captured.err
    assert "text.png: not an image" in captured.err
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert len(log["unreadable_files"]) == 2 and sum(log["split_sizes"].values()) == 8
    assert "2 unreadable file(s) skipped" in captured.out


def test_guess_prints_text_and_json(trained, capsys):
    base, _, _ = trained
    vader = sorted((SUPERHEROES / "darth_vader").iterdir())[0]
    elsa = sorted((SUPERHEROES / "elsa").iterdir())[0]
    assert cli.main(["guess", str(base), str(vader)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("darth vader (score = 0.") and lines[1].startswith("elsa (score = 0.")
    assert cli.main(["guess", str(base), str(vader), str(elsa)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"==> {vader} <==" and out[3] == "" and out[4] == f"==> {elsa} <=="
    assert cli.main(["guess", str(base), str(elsa), "--json"]) == 0
    (document,) = json.loads(capsys.readouterr().out)
    assert document["label"] == "elsa" and np.isclose(sum(document["scores"].values()), 1, atol=1e-4)


def test_guess_of_an_unreadable_image_exits_1_and_scores_the_rest(trained, tmp_path, capsys):
    base, _, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    good = sorted((SUPERHEROES / "elsa").iterdir())[0]
    assert cli.main(["guess", str(base), str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert f"skipping {bad}: broken JPEG data" in captured.err
    assert "elsa (score = " in captured.out
