"""export.sh's formats (TFLite float and int8, Core ML), --model, and the accuracy per format."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from conftest import SIGN_DIGITS, SUPERHEROES, train_config

from tensorguess.deploy import export
from tensorguess.export import coreml, tflite
from tensorguess.export.formats import FILES, ExportError, parse_formats
from tensorguess.score.lite import LiteClassifier
from tensorguess.score.models import open_classifier
from tensorguess.score.predict import ClassifierError
from tensorguess.sort.folder import MANIFEST, score_digits, sort


def test_every_format_is_written_and_the_tflite_ones_score(exported):
    base, table, lines = exported
    for name in ("tflite", "tflite-int8", "coreml"):
        assert (base / FILES[name]).exists()
    labels = (base / "retrained_labels.txt").read_text().splitlines()
    photo = sorted((SUPERHEROES / "elsa").iterdir())[0]
    with open_classifier(base, "pb") as reference:
        expected = next(reference.score_files([photo])).scores
    for name in ("saved_model", "tflite", "tflite-int8"):
        with open_classifier(base, name) as classifier:
            assert classifier.labels == labels
            scores = next(classifier.score_files([photo])).scores
            assert scores.shape == (len(labels),) and abs(scores.sum() - 1) < 0.02
            assert scores.argmax() == expected.argmax()
            if name != "tflite-int8":
                assert np.abs(scores - expected).max() < 1e-4, name
    assert any(line.startswith("Accuracy per format") for line in lines)


def test_the_table_agrees_with_the_pb_and_lands_in_the_report(exported):
    base, table, _ = exported
    rows = {row["format"]: row for row in table}
    assert list(rows) == ["pb", "tflite", "tflite-int8", "coreml"]
    assert rows["pb"]["agreement"] == 1.0
    assert rows["tflite"]["agreement"] == 1.0 and rows["tflite"]["max_score_difference"] < 1e-4
    # 37 test photos: one that changes label is 2.7%; int8 features are at a cosine of about
    # 0.99 to the float ones, enough to move a photo near a boundary (docs/benchmarks.md, section 9).
    int8 = rows["tflite-int8"]
    assert int8["agreement"] >= 0.94 and int8["flagged"] == (int8["agreement"] < 0.98)
    assert int8["accuracy"] >= rows["pb"]["accuracy"] - 0.03
    assert rows["coreml"]["n"] == 0 and "macOS" in rows["coreml"]["note"]
    assert rows["pb"]["n"] == json.loads((base / "train_log.json").read_text())["test_n"]
    report = json.loads((base / "report" / "report.json").read_text())
    assert report["formats"] == json.loads(json.dumps(table))
    page = (base / "report" / "report.html").read_text()
    assert '<table id="formats">' in page and "tflite-int8" in page


def test_int8_takes_uint8_pixels_and_both_carry_the_labels(exported):
    base, _, _ = exported
    labels = (base / "retrained_labels.txt").read_text().splitlines()
    for name in ("tflite", "tflite-int8"):
        data = (base / FILES[name]).read_bytes()
        assert tflite.packed_labels(data) == labels
    with LiteClassifier(base / FILES["tflite-int8"], base / "retrained_labels.txt") as classifier:
        assert classifier.input["dtype"] == np.uint8
        scale, zero = classifier.input["quantization"]
        assert abs(scale - 1 / 255) < 1e-9 and zero == 0, "the uint8 input is the pixels themselves"
        assert classifier.digest == hashlib.sha1((base / FILES["tflite-int8"]).read_bytes()).hexdigest()
    with LiteClassifier(base / FILES["tflite"], base / "retrained_labels.txt") as classifier:
        assert classifier.input["dtype"] == np.float32
        assert list(classifier.input["shape_signature"]) == [-1, 224, 224, 3]


def test_core_ml_spec_reads_back_with_input_scale_labels_and_outputs(exported):
    base, _, _ = exported
    labels = (base / "retrained_labels.txt").read_text().splitlines()
    spec = coreml.read_spec(base / FILES["coreml"])
    assert (spec["input"], spec["width"], spec["height"], spec["color_space"]) == ("image", 224, 224, "RGB")
    assert abs(spec["scale"] - 1 / 255) < 1e-7 and spec["bias"] in (0.0, [0.0, 0.0, 0.0])
    assert spec["labels"] == labels == ["darth vader", "elsa"]
    assert spec["outputs"] == ["classLabel", "classLabelProbs"]
    assert spec["predicted_probabilities"] == "classLabelProbs"
    with pytest.raises(coreml.CoreMLCheckError, match="labels"):
        coreml.check(base / FILES["coreml"], list(reversed(labels)), 224)
    with pytest.raises(coreml.CoreMLCheckError, match="width"):
        coreml.check(base / FILES["coreml"], labels, 299)


def test_guessdir_with_int8_names_and_records_copies_as_the_pb_does(exported, tmp_path):
    base, _, _ = exported
    source = tmp_path / "photos"
    source.mkdir()
    for label in ("darth_vader", "elsa"):
        for photo in sorted((SUPERHEROES / label).iterdir())[-6:]:
            shutil.copy(photo, source / f"{label}-{photo.name}")
    records = {}
    for model in ("pb", "tflite-int8"):
        with open_classifier(base, model) as classifier:
            sort(classifier, source, tmp_path / model, batch_size=4, warn=lambda line: None)
            digest = classifier.digest
        entries = [json.loads(line) for line in (tmp_path / model / MANIFEST).read_text().splitlines()]
        assert {entry["model"] for entry in entries} == {digest}
        records[model] = {entry["source"]: entry for entry in entries}
    assert records["tflite-int8"]["elsa-" + sorted((SUPERHEROES / "elsa").iterdir())[-1].name]["model"] \
        == hashlib.sha1((base / FILES["tflite-int8"]).read_bytes()).hexdigest()
    assert set(records["pb"]) == set(records["tflite-int8"])
    agreeing = 0
    for name, entry in records["tflite-int8"].items():
        assert entry["copy"].startswith(f"{entry['label']}--{score_digits(entry['score'])}")
        assert (tmp_path / "tflite-int8" / entry["copy"]).read_bytes() == (source / name).read_bytes()
        assert set(entry) == set(records["pb"][name]), "the same record, field for field"
        if entry["label"] == records["pb"][name]["label"]:
            agreeing += 1
    assert agreeing >= 11


def test_missing_format_and_bad_format_are_one_line(exported, tmp_path):
    base, _, _ = exported
    shutil.copy(base / "retrained_graph.pb", tmp_path / "retrained_graph.pb")
    shutil.copy(base / "retrained_labels.txt", tmp_path / "retrained_labels.txt")
    with pytest.raises(ClassifierError, match=r"retrained_graph_int8\.tflite does not exist; write it "
                       r"with export\.sh .* --format tflite-int8"):
        open_classifier(tmp_path, "tflite-int8")
    with pytest.raises(ExportError, match="--format takes"):
        parse_formats("tflite,onnx")
    with pytest.raises(ExportError, match="train_log.json is missing"):
        export(tmp_path, ["tflite-int8"], say=lambda line: None)
    (tmp_path / FILES["tflite"]).write_bytes(b"not a flatbuffer")
    with pytest.raises(ClassifierError, match="is not a TFLite model"):
        open_classifier(tmp_path, "tflite")


def test_int8_on_sign_digits_keeps_the_accuracy_and_agrees_on_98_percent(tmp_path):
    """Sign-digits: every photo a hand on one background, classes close in feature space, so
    small changes of the features change labels. Measured with the recipe of tflite.int8_model
    (docs/benchmarks.md section 9): this training's head agrees on 100% of the 165 test photos
    (97.6%, 4 photos, before bias correction), the heads of `train --random_seed` 1, 3 and 7
    on 99.4% each (one photo). 98% is what export.sh flags under."""
    from tensorguess.retrain import retrain

    cfg = train_config(tmp_path, SIGN_DIGITS)
    retrain(cfg, say=lambda line: None, warn=lambda line: None)
    lines: list[str] = []
    table = export(tmp_path, ["tflite-int8"], say=lines.append, warn=lines.append)
    rows = {row["format"]: row for row in table}
    int8 = rows["tflite-int8"]
    assert int8["n"] >= 150
    assert int8["accuracy"] >= rows["pb"]["accuracy"] - 0.02, "int8 loses no accuracy to speak of"
    assert int8["agreement"] >= 0.98, int8  # all int8: 96.4% with seed 1; no bias correction: 97.6%
    assert not int8["flagged"]
    assert not [line for line in lines if line.startswith("WARNING: tflite-int8")]


@pytest.mark.parametrize("disagreeing, flagged", [(0, False), (2, False), (3, True), (40, True)])
def test_a_format_agreeing_on_under_98_percent_is_flagged_loudly(disagreeing, flagged):
    """The table's rule on its own (the real formats above all agree): of 100 photos, 98 alike
    is not flagged, 97 is, with a WARNING line naming the format, its file and the figure."""
    from tensorguess.report import formats as table_of

    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(4), 100)
    scores = reference.copy()
    scores[:disagreeing] = np.roll(scores[:disagreeing], 1, axis=1)  # another top label
    moved = int((scores.argmax(1) != reference.argmax(1)).sum())
    assert moved == disagreeing
    truth = reference.argmax(1)
    row = table_of.row("tflite-int8", FILES["tflite-int8"], scores, reference, truth, list("abcd"))
    assert row["agreement"] == pytest.approx(1 - disagreeing / 100) and row["flagged"] == flagged
    warnings = [line for line in table_of.console_lines([row]) if line.startswith("WARNING")]
    assert warnings == ([f"WARNING: tflite-int8 ({FILES['tflite-int8']}) agrees with the .pb on only "
                         f"{100 - disagreeing:.1f}% of the test photos (under 98%): it is not the same "
                         "classifier; check its accuracy above before deploying it"] if flagged else [])


def test_int8_keeps_the_start_in_float_and_the_module_weights_on_their_grid(exported):
    """The recipe as built: uint8 in, the first convolutions in float, int8 from there on, and
    the int8 convolutions' weights the module's own values (on its uint8 grid)."""
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    from tensorguess.export import weight_grid

    base, _, _ = exported
    tree = flatbuffer_utils.read_model_from_bytearray(bytearray((base / FILES["tflite-int8"]).read_bytes()))
    graph = tree.subgraphs[0]
    kinds = {schema.BuiltinOperator.CONV_2D: "CONV_2D",
             schema.BuiltinOperator.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D"}
    convolutions = [op for op in graph.operators
                    if flatbuffer_utils.get_builtin_code_from_operator_code(
                        tree.operatorCodes[op.opcodeIndex]) in kinds]
    types = [graph.tensors[op.inputs[1]].type for op in convolutions]
    assert types[:tflite.FLOAT_CONVOLUTIONS] == [schema.TensorType.FLOAT32] * tflite.FLOAT_CONVOLUTIONS
    assert set(types[tflite.FLOAT_CONVOLUTIONS:]) == {schema.TensorType.INT8}
    assert graph.tensors[graph.inputs[0]].type == schema.TensorType.UINT8
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((base / "retrained_graph.pb").read_bytes())
    floats = weight_grid.module_filters(graph_def)
    assert len(floats) == len(convolutions)
    exact = channels = 0
    for op, (_, weights) in list(zip(convolutions, floats, strict=True))[tflite.FLOAT_CONVOLUTIONS:]:
        weight = graph.tensors[op.inputs[1]]
        scales = np.array(weight.quantization.scale, np.float64)
        axis = weight.quantization.quantizedDimension
        values = tree.buffers[weight.buffer].data.view(np.int8).reshape(weights.shape)
        held = np.moveaxis(values, axis, 0).reshape(len(scales), -1) * scales[:, np.newaxis]
        error = np.abs(held - np.moveaxis(weights, axis, 0).reshape(len(scales), -1)).max(1)
        exact += int((error < 1e-5 * np.abs(weights).max()).sum())
        channels += len(scales)
    assert exact >= 0.99 * channels, f"{exact} of {channels} channels hold the module's weights"


def test_serve_and_tta_run_the_tflite_models_too(exported, tmp_path):
    """serve.sh --model tflite-int8 answers what guess --model tflite-int8 gives; --tta works
    on a .tflite as on the .pb (the mean over the same six views)."""
    from serve_helpers import ServerProcess

    from tensorguess.score import tta

    base, _, _ = exported
    photo = sorted((SUPERHEROES / "elsa").iterdir())[1]
    with open_classifier(base, "tflite-int8") as classifier:
        expected = next(classifier.score_files([photo])).scores
        labels = classifier.labels
    server = ServerProcess(base, "--model", "tflite-int8", log=tmp_path / "serve.log")
    try:
        status, answer, _ = server.request("POST", "/predict", photo.read_bytes())
    finally:
        server.stop()
    assert status == 200
    assert [answer["scores"][label] for label in labels] == pytest.approx(expected.tolist(), abs=1e-6)
    with open_classifier(base, "tflite", tta=True) as augmented, open_classifier(base, "tflite") as plain:
        from tensorguess.features.pipeline import network_batch, prepare_for_network

        views = tta.views(network_batch([prepare_for_network(photo, plain.size)], plain.size))
        np.testing.assert_allclose(next(augmented.score_files([photo])).scores, plain.run(views).mean(axis=0),
                                   atol=1e-6)
    with pytest.raises(ClassifierError, match="--tta runs with"):
        open_classifier(base, "saved_model", tta=True)
