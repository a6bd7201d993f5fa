"""evaluate.sh finds the set's photos and the report folder as the CLI does (the Docker runtime
mounts them before the CLI runs, so the two decisions must agree)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from tensorguess.commands.evaluate import places
from tensorguess.errors import UsageError


def wrapper_places(folder: Path, labelled: Path, out: Path | None, cwd: Path) -> tuple | str:
    """scripts/lib/mounts.sh's evaluate_places, or its one-line refusal."""
    script = ('source "$0/scripts/lib.sh"; evaluate_places "$1" "$2" "$3"; '
              'printf "%s\\0%s\\0%s" "$TG_LABELLED" "$TG_PHOTOS" "$TG_OUT"')
    done = subprocess.run(["bash", "-c", script, str(REPO), str(folder), str(labelled), str(out or "")],
                          capture_output=True, text=True, cwd=cwd)
    if done.returncode:
        return done.stderr.strip()
    return tuple(Path(part) for part in done.stdout.split("\0"))


def cli_places(folder: Path, labelled: Path, out: Path | None, cwd: Path, monkeypatch) -> tuple | str:
    monkeypatch.chdir(cwd)
    try:
        return places(folder.absolute(), labelled, out)
    except UsageError as error:
        return str(error)


@pytest.fixture
def sets(tmp_path):
    model = tmp_path / "model"
    (model / "held out").mkdir(parents=True)
    (tmp_path / "photos" / "elsa").mkdir(parents=True)
    for name in ("labels.csv", "rows.CSV", "rows.v2.txt", ".hidden", "trailing."):
        (tmp_path / "photos" / name).write_text("path,label\n")
    (tmp_path / "photos" / "hands.json").write_text('{"images": []}')  # a points model's annotation file
    (tmp_path / "points" / "frames").mkdir(parents=True)  # a points model's set: keypoints.json beside photos
    (tmp_path / "points" / "keypoints.json").write_text('{"images": []}')
    (tmp_path / "linked").symlink_to(tmp_path / "photos")
    return tmp_path


@pytest.mark.parametrize("labelled, out", [
    ("photos", None), ("photos/", None), ("linked", None), ("photos/labels.csv", None),
    ("photos/rows.CSV", None), ("photos/rows.v2.txt", None), ("photos/.hidden", None),
    ("photos/trailing.", None), ("linked/labels.csv", None), ("photos", "reports/a"),
    ("photos", "photos/report"), ("linked", "photos/elsa/r"), ("photos/labels.csv", "photos/r"),
    ("photos", "linked/../elsewhere"), ("points", None), ("points/", None), ("points/keypoints.json", None),
    ("photos/hands.json", None), ("linked/hands.json", "reports/b"), ("points", "points/frames/report"),
    ("points/keypoints.json", "points/report"), ("points/keypoints.json", "photos/report"),
])
def test_the_wrapper_and_the_cli_place_the_set_and_the_report_alike(sets, labelled, out, monkeypatch):
    folder = sets / "model"
    out_path = Path(out) if out else None
    by_wrapper = wrapper_places(folder, Path(labelled), out_path, sets)
    by_cli = cli_places(folder, Path(labelled), out_path, sets, monkeypatch)
    if isinstance(by_cli, str):  # refused: a report folder inside the photos' folder
        assert isinstance(by_wrapper, str) and "inside" in by_cli, (by_wrapper, by_cli)
        assert by_wrapper.endswith(by_cli), (by_wrapper, by_cli)
    else:
        assert by_wrapper == by_cli


def test_a_missing_set_is_refused_by_both(sets, monkeypatch):
    assert "does not exist" in cli_places(sets / "model", Path("nowhere"), None, sets, monkeypatch)
    assert "nowhere" in wrapper_places(sets / "model", Path("nowhere"), None, sets)
