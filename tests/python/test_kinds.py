"""kinds: a model's kind is dispatched in one place, and a kind not known is refused in one line."""

from __future__ import annotations

import pytest

from tensorguess import cli, kinds, model_dir


def test_a_model_without_a_kind_file_is_of_kind_classes(tmp_path):
    assert kinds.of_model(tmp_path).name == model_dir.CLASSES
    (tmp_path / model_dir.MODEL_KIND).write_text("classes\n")
    assert kinds.of_model(tmp_path) is kinds.named(model_dir.CLASSES)


def test_every_job_of_every_kind_names_a_function():
    for kind in kinds.KINDS.values():
        for job in ("train", "open_model", "sort", "evaluate", "export", "guess_lines", "guess_document",
                    "serve_app"):
            assert callable(kind.function(job)), (kind.name, job)


def test_a_points_model_is_of_kind_points_and_its_export_is_the_points_one(tmp_path, capsys):
    (tmp_path / model_dir.MODEL_KIND).write_text("points\n")
    assert kinds.of_model(tmp_path) is kinds.named(model_dir.POINTS)
    # export is the points kind's own (deploy_points): a DIR without its graph is one line.
    assert cli.main(["export", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "retrained_graph.pb" in err and "train first" in err, err


@pytest.mark.parametrize("command", [["guess", "photo.jpg"], ["export"], ["sort", "src", "dest"]])
def test_an_unknown_kind_is_refused_in_one_line(tmp_path, capsys, command):
    (tmp_path / model_dir.MODEL_KIND).write_text("nonsense\n")
    (tmp_path / "src").mkdir()
    name, *rest = command
    arguments = [name, str(tmp_path), *(str(tmp_path / item) for item in rest)]
    assert cli.main(arguments) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert str(tmp_path / model_dir.MODEL_KIND) in err and "'nonsense'" in err and "train again" in err
