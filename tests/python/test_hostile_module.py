"""Modules and .tflite models that would do more than compute: refused in one line before they run.

A feature-extractor SavedModel is checked from its saved_model.pb (features/module_check.py)
wherever a module is loaded; a .tflite model's input side and operations are checked before
its tensors are allocated (score/lite.py). Every hostile file here is made by TensorFlow's
own tf.saved_model.save and TFLite converter, or is a real MobileNet's with one part changed.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import MOBILENET_V1, MOBILENET_V2, SHARED, SUPERHEROES

from tensorguess import cli
from tensorguess.features import module_check, modules

MOBILENETS = [MOBILENET_V1, MOBILENET_V2, SHARED / "models" / "mobilenet_v2_100_224" / "classification"]


def save_module(folder: Path, body) -> Path:
    """A SavedModel whose __call__ maps images [N,224,224,3] to 4 features, running `body` first."""
    import tensorflow as tf

    class Module(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable(tf.ones([3, 4]))

        @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
        def __call__(self, images):
            with tf.control_dependencies(body()):
                return tf.reduce_mean(images, [1, 2]) @ self.weights

    tf.saved_model.save(Module(), str(folder))
    return folder


def reads_and_writes(target: Path):
    """What the issue's hostile module does when called: reads /etc/hostname, writes `target`."""
    import tensorflow as tf

    return lambda: [tf.io.write_file(str(target), tf.io.read_file("/etc/hostname"))]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    """(the hostile module's folder, the file it writes when run)."""
    base = tmp_path_factory.mktemp("hostile")
    target = base / "pwned"
    return save_module(base / "module", reads_and_writes(target)), target


@pytest.mark.parametrize("module", MOBILENETS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_the_real_mobilenets_pass(module):
    assert module_check.refusal(module) is None


def test_a_module_that_reads_and_writes_files_is_refused_before_it_loads(hostile):
    module, target = hostile
    message = module_check.refusal(module)
    assert message.startswith(f"refusing to load the module {module}: it holds operations that do "
                              "more than compute on tensors (ReadFile, WriteFile; ReadFile in function ")
    assert message.endswith("pass --trust_graph only if you trust whoever made it")
    assert "\n" not in message
    with pytest.raises(modules.ModuleError, match="refusing to load the module"):
        modules.resolve(str(module))
    assert not target.exists()


def test_trust_graph_loads_and_runs_it(hostile):
    import tensorflow as tf

    module, target = hostile
    spec, loaded = modules.resolve(str(module), trusted=True)
    assert spec.input_size == 224
    assert modules.feature_function(loaded)(tf.zeros([1, 224, 224, 3])).shape == (1, 4)
    assert target.read_bytes() == Path("/etc/hostname").read_bytes()  # it is as hostile as it says
    target.unlink()


def test_train_refuses_it_in_one_line_and_runs_it_with_trust_graph(hostile, tmp_path, capsys):
    module, target = hostile
    for label in ("darth_vader", "elsa"):
        shutil.copytree(SUPERHEROES / label, tmp_path / "data" / label)
    argv = ["train", str(tmp_path), "--tfhub_module", str(module), "--how_many_training_steps", "5"]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"tensor-guess: {module_check.refusal(module)}"]
    assert not target.exists()
    assert not (tmp_path / "retrained_graph.pb").exists()
    assert modules.load(str(module), trusted=True) is not None  # what the flag reaches


def test_a_checkpoint_write_in_call_is_refused(tmp_path):
    import tensorflow as tf

    def save_elsewhere():
        return [tf.raw_ops.SaveV2(prefix=str(tmp_path / "planted"), tensor_names=["x"],
                                  shape_and_slices=[""], tensors=[tf.constant(1.0)])]

    message = module_check.refusal(save_module(tmp_path / "module", save_elsewhere))
    assert "(SaveV2; SaveV2 in function '__inference___call__" in message


def tampered_mobilenet(folder: Path, change) -> Path:
    """MobileNet v1's saved_model.pb with `change(meta_graph)` applied, in `folder`."""
    saved = module_check.read_saved_model(MOBILENET_V1)
    change(saved.meta_graphs[0])
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(saved.SerializeToString())
    return folder


def function_named(meta_graph, part: str):
    return next(f for f in meta_graph.graph_def.library.function if part in f.signature.name)


@pytest.mark.parametrize("op", ["WriteFile", "SaveV2"])
def test_the_restore_function_may_only_read_its_checkpoint(tmp_path, op):
    def plant(meta_graph):
        node = function_named(meta_graph, "_traced_restore").node_def.add()
        node.name, node.op = "planted", op

    message = module_check.refusal(tampered_mobilenet(tmp_path / "module", plant))
    assert f"({op}; {op} in function '__inference__traced_restore_" in message


def test_the_save_function_may_not_read_files(tmp_path):
    def plant(meta_graph):
        node = function_named(meta_graph, "_traced_save").node_def.add()
        node.name, node.op = "planted", "ReadFile"

    assert "(ReadFile; ReadFile in function '__inference__traced_save_" in module_check.refusal(
        tampered_mobilenet(tmp_path / "module", plant))


def test_a_function_called_by_the_feature_function_and_the_saver_is_held_to_the_stricter_rule(tmp_path):
    # The restore function, called from __call__ too, may no longer restore a checkpoint there.
    def call_restore(meta_graph):
        restore = function_named(meta_graph, "_traced_restore").signature.name
        node = function_named(meta_graph, "___call__").node_def.add()
        node.name, node.op = "planted", "PartitionedCall"
        node.attr["f"].func.name = restore

    message = module_check.refusal(tampered_mobilenet(tmp_path / "module", call_restore))
    assert "(RestoreV2; RestoreV2 in function '__inference__traced_restore_" in message


def test_an_unknown_op_is_refused_even_when_trusted(tmp_path):
    def plant(meta_graph):
        node = function_named(meta_graph, "___call__").node_def.add()
        node.name, node.op = "planted", "NoSuchOpAnywhere"

    module = tampered_mobilenet(tmp_path / "module", plant)
    assert "does not know (NoSuchOpAnywhere)" in module_check.refusal(module, trusted=True)


def test_a_downloaded_module_is_checked_too(hostile, tmp_path, monkeypatch):
    module, target = hostile
    url = "https://tfhub.dev/someone/hostile/1"
    shutil.copytree(module, tmp_path / hashlib.sha1(url.encode()).hexdigest())  # as download.py caches it
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    with pytest.raises(modules.ModuleError, match="refusing to load the module"):
        modules.resolve(url)
    assert not target.exists()


def test_the_ray_feature_actor_checks_the_module_on_its_node(hostile):
    from tensorguess.engine.actors import FeatureActor

    module, target = hostile
    with pytest.raises(modules.ModuleError, match="refusing to load the module"):
        FeatureActor(str(module), 224, "0,1", identity="the driver's")
    assert not target.exists()
