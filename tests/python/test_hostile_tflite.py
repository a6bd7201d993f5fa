""".tflite models guess cannot run safely: refused in one line before their tensors are allocated.

Each model is made by TensorFlow's own TFLite converter from a tiny classifier (two labels);
the huge one is the 224-pixel model with its input side changed to 30000 in the FlatBuffer
(converting a 30000x30000 input takes the converter some 20 s for the same file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SUPERHEROES

from tensorguess import cli
from tensorguess.score.lite import MAX_INPUT_SIDE, LiteClassifier
from tensorguess.score.predict import ClassifierError

MODEL = "retrained_graph.tflite"  # what guess --model tflite runs in DIR


def converted(body, **settings) -> bytes:
    """A .tflite of images [1,224,224,3] -> softmax(body(mean colour [1,2]))."""
    import tensorflow as tf

    weights = tf.constant([[1.0, -1.0]] * 3)

    def classify(images):
        return tf.nn.softmax(body(tf.reduce_mean(images, [1, 2]) @ weights))

    function = tf.function(classify).get_concrete_function(tf.TensorSpec([1, 224, 224, 3], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    for name, value in settings.items():
        if name == "supported_ops":
            converter.target_spec.supported_ops = value
        else:
            setattr(converter, name, value)
    return converter.convert()


def inverted(scores):
    """A 2x2 matrix inverse: TFLite has no builtin for it (MatrixInverse)."""
    import tensorflow as tf

    matrix = tf.reshape(tf.concat([scores, scores + 1.0], 1), [2, 2]) + tf.eye(2)
    return tf.reshape(tf.linalg.inv(matrix)[0], [1, 2])


def with_input_side(data: bytes, side: int) -> bytes:
    """The model with its input tensor declared side x side (shape and shape signature)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph = model.subgraphs[0]
    tensor = graph.tensors[graph.inputs[0]]
    tensor.shape = np.array([1, side, side, 3], np.int32)
    if tensor.shapeSignature is not None:
        tensor.shapeSignature = np.array([-1 if d < 0 else d for d in (1, side, side, 3)], np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """name -> a tf_files folder holding that model as DIR/retrained_graph.tflite and two labels."""
    import tensorflow as tf

    plain = converted(lambda scores: scores)
    made = {
        "plain": plain,
        "huge": with_input_side(plain, 30000),
        "flex": converted(inverted, supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS,
                                                   tf.lite.OpsSet.SELECT_TF_OPS]),
        "custom": converted(inverted, allow_custom_ops=True),
    }
    folders = {}
    for name, data in made.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / MODEL).write_bytes(data)
        (folder / "retrained_labels.txt").write_text("darth vader\nelsa\n")
        folders[name] = folder
    return folders


def open_model(folder: Path) -> LiteClassifier:
    return LiteClassifier(folder / MODEL, folder / "retrained_labels.txt")


def test_an_ordinary_converted_model_runs(models):
    with open_model(models["plain"]) as classifier:
        scores = classifier.run(np.zeros((2, 224, 224, 3), np.float32))
    assert scores.shape == (2, 2) and np.allclose(scores.sum(1), 1)


EXPECTED = {
    "huge": f"takes 30000x30000-pixel images, where every model train.sh makes takes square ones of "
            f"at most {MAX_INPUT_SIDE} pixels a side (the most --input_size allows); export it again "
            "with export.sh",
    "flex": "needs TensorFlow's own operations (MatrixInverse, converted with SELECT_TF_OPS), which "
            "this TFLite runtime does not have; export it again with export.sh (builtin operations "
            "only) or use --model pb",
    "custom": "holds a custom operation (MatrixInverse) that this TFLite runtime does not have; export "
              "it again with export.sh (builtin operations only) or use --model pb",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_refused_before_a_tensor_is_allocated(models, name):
    with pytest.raises(ClassifierError) as refused:
        open_model(models[name])
    assert str(refused.value) == f"{models[name] / MODEL} {EXPECTED[name]}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_guess_says_so_in_one_line(models, name, capsys):
    open_refused = pytest.raises(ClassifierError)
    with open_refused:  # first, so that a model that is let through is never run here
        open_model(models[name])
    photo = next((SUPERHEROES / "elsa").iterdir())
    assert cli.main(["guess", str(models[name]), str(photo), "--model", "tflite"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [f"tensor-guess: {models[name] / MODEL} {EXPECTED[name]}"]
