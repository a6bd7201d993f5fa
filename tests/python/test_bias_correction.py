"""Bias correction of the int8 model: it removes the per-channel offsets it measures, brings
the features to the float ones on photos it never saw, and changes nothing but the biases."""

from __future__ import annotations

import numpy as np
import pytest

from tensorguess.export import bias_correction, formats, tflite
from tensorguess.model_dir import TrainLog


def _tree(model: bytes):
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(model))


def _bottleneck(model: bytes, pixels: np.ndarray) -> np.ndarray:
    """The features the head reads (the fully connected layer's input), in reals."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    tree = _tree(model)
    head = [op for op in tree.subgraphs[0].operators if flatbuffer_utils.get_builtin_code_from_operator_code(
        tree.operatorCodes[op.opcodeIndex]) == schema.BuiltinOperator.FULLY_CONNECTED]
    runner = bias_correction._Runner(model)
    rows = []
    for image in pixels:
        runner.run(image)
        rows.append(runner.value(head[0].inputs[0]).reshape(-1).astype(np.float64))
    return np.stack(rows)


def _values(array) -> list:
    return [] if array is None else np.asarray(array).tolist()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def models(trained):
    """The superheroes classifier's int8 model before and after correction, its float model,
    the calibration images and the test split's pixels."""
    import tensorflow as tf

    base, _, _ = trained
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString((base / "retrained_graph.pb").read_bytes())
    photos = formats.split_photos(TrainLog.read(base / "train_log.json"),
                                  base / "train_log.json", print)
    images = formats.calibration_images(formats.calibration_paths(photos), 224)
    before = tflite.int8_model(graph_def, images, correct_bias=False)
    reference = tflite.float_model(graph_def)
    after, facts = bias_correction.correct(before, reference, images())
    test = np.stack(list(formats.calibration_images([p for p, _ in photos.parts["testing"]], 224)()))
    return before, after, facts, reference, images, test


def test_the_offsets_are_gone_from_every_layer(models):
    before, after, facts, reference, images, _ = models
    assert facts["layers"] == 24 and facts["photos"] == min(64, len(list(images())))
    before_offsets = np.array(bias_correction.measure(before, reference, images()))
    left = np.array(bias_correction.measure(after, reference, images()))
    assert list(left) == facts["offset_rms_left"]
    # Measured here: 0.0105 on average before (0.046 at worst), 0.0010 left (0.0043).
    assert left.mean() < 0.25 * before_offsets.mean(), (before_offsets, left)
    assert left.max() < 0.25 * before_offsets.max()


def test_the_features_of_unseen_photos_come_closer_to_the_float_ones(models):
    before, after, _, reference, _, test = models
    expected = _bottleneck(reference, test)
    plain = _cosines(_bottleneck(before, test), expected)
    corrected = _cosines(_bottleneck(after, test), expected)
    # Measured on the 37 test photos: a mean cosine of 0.99926 before and 0.99956 after, 35 of
    # them closer (sign-digits' 100 px photos enlarged to 224 lose far more: 0.9886, 0.9993).
    assert 1 - corrected.mean() < 0.75 * (1 - plain.mean()), (plain.mean(), corrected.mean())
    assert (corrected > plain).mean() > 0.75, (plain, corrected)


def test_only_the_convolutions_biases_change(models):
    before, after, _, _, _, _ = models
    old, new = _tree(before), _tree(after)
    graph = old.subgraphs[0]
    assert [(op.opcodeIndex, list(op.inputs), list(op.outputs)) for op in graph.operators] == \
        [(op.opcodeIndex, list(op.inputs), list(op.outputs)) for op in new.subgraphs[0].operators]
    biases = {graph.tensors[op.inputs[2]].buffer for op in bias_correction._convolutions(old)
              if len(op.inputs) > 2}
    changed = {i for i, (a, b) in enumerate(zip(old.buffers, new.buffers, strict=True))
               if _values(a.data) != _values(b.data)}
    assert changed and changed <= biases
    for a, b in zip(graph.tensors, new.subgraphs[0].tensors, strict=True):  # scales and zero points too
        assert (a.quantization is None) == (b.quantization is None)
        if a.quantization is not None:
            for field in ("scale", "zeroPoint"):
                assert _values(getattr(a.quantization, field)) == _values(getattr(b.quantization, field))


def test_export_writes_the_corrected_model(exported, models):
    """export.sh's int8 file is this recipe: its flatbuffer is the corrected model's with the
    TFLite metadata added, byte for byte (the labels are appended after it)."""
    from tensorguess import model_dir
    from tensorguess.export import tflite_metadata

    _, after, _, _, _, _ = models
    base, _, _ = exported
    labels = (base / model_dir.LABELS).read_text().splitlines()
    expected = tflite_metadata.with_metadata(after, tflite.classifier_metadata(after, labels, int8=True))
    written = (base / formats.FILES["tflite-int8"]).read_bytes()
    assert written[:len(expected)] == expected


def test_a_model_that_does_not_match_the_float_one_comes_back_unchanged(models):
    import tensorflow as tf

    before, _, _, _, images, _ = models

    @tf.function(input_signature=[tf.TensorSpec([1, 224, 224, 3], tf.float32)])
    def one_convolution(x):
        return tf.nn.relu6(tf.nn.conv2d(x, tf.ones([3, 3, 3, 8]), 2, "SAME"))

    other = tf.lite.TFLiteConverter.from_concrete_functions(
        [one_convolution.get_concrete_function()], one_convolution).convert()
    model, facts = bias_correction.correct(before, other, images())
    assert model == before and "skipped" in facts


@pytest.mark.parametrize("total", [0, 5, 64, 65, 129, 300, 1000])
def test_evenly_spread_takes_photos_from_all_over_in_one_pass(total):
    chosen = bias_correction.evenly_spread(iter(range(total)), 64)
    assert len(chosen) == min(total, 64) and chosen == sorted(set(chosen))
    if total > 64:
        assert chosen[0] == 0 and chosen[-1] >= total - total // 32 - 1  # reaches the end
        assert max(np.diff(chosen)) <= 4 * total / 64  # no long stretch left out
