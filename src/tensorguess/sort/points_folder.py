"""The folder sort (guessDir.sh) for a points model: each photo of SRC copied into DEST, its
points drawn beside it, and every answer in DEST/keypoints.json to correct and train on again.

For each readable photo, three things in DEST:
- `NNNNN--<photo name>` (NNNNN: the photo's score, the mean of its points' scores, to five
  decimals, so a listing by name shows the least sure first; just `<photo name>` for a model that
  gives no score): the photo's own bytes, untouched, which keypoints.json names, so a labelling
  tool shows the points over the photo and train.sh learns from the photo, not from a drawing;
- `drawn/<copy's name>.png`: the photo with the box, the points and the skeleton drawn
  (by the folder `drawings` makes: points_guessdir.py gives guess --draw's, report/drawings_folder);
- its entry in `keypoints.json` (sort/keypoints_file.py), and its line in guesses.jsonl.

As safe and resumable as the classes' sort (sort/folder.py, whose pieces it uses): a copy is
claimed with O_EXCL after its note (copy_in_flight) is written, filled through its descriptor,
drawn, then recorded; a rerun finishes the copy a kill left, skips what is recorded, and adds to
keypoints.json what an earlier run recorded but did not write there (the file is written at the
end of a run, whole). Nothing of the user's is written over: an earlier keypoints.json that is
not one of these points stops the run before anything is written, and the drawings never go
over a file guess --draw did not write.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tensorguess.data.images import UnreadableImage, read_image
from tensorguess.errors import TensorGuessError
from tensorguess.features.pipeline import ahead
from tensorguess.score.points import PointsResult, PointsScorer
from tensorguess.score.points_guess import photo_score
from tensorguess.sort import copy_in_flight, keypoints_file
from tensorguess.sort.folder import (
    Manifest,
    SortError,
    SortSummary,
    _append_or_stop,
    _stopped,
    copy_scored,
    is_regular,
    opened_folders,
    photos_to_sort,
    record_not_photos,
)
from tensorguess.sort.names import IN_FLIGHT, MANIFEST, is_copy_name, safe_label, score_digits
from tensorguess.sort.safe_open import NotOurs, open_ours

DRAWN = "drawn"  # DEST's folder of drawings
# A points note's keys and their types.
NOTE_KEYS = {"source": str, "copy": str, "points": list, "point_scores": list, "box": list, "size": list,
             "root": str, "model": str}


def copy_stem(source: str, score: float | None) -> str:
    stem = safe_label(PurePosixPath(source).stem)
    return stem if score is None else f"{score_digits(score)}--{stem}"


def note_problem(names: list[str]) -> Callable[[object], str | None]:
    """Why a record read from the note is not one this sort wrote (copy_in_flight's `forged`)."""

    def forged(record: object) -> str | None:
        if not isinstance(record, dict):
            return "not a JSON object"
        wrong = sorted(key for key, kind in NOTE_KEYS.items() if not isinstance(record.get(key), kind))
        if wrong:
            return f"no {', '.join(wrong)} of the right type"
        if len(record["points"]) != len(names) or len(record["point_scores"]) != len(names):
            return f"not {len(names)} points"
        score = record.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))
                                  or not 0 <= score <= 1):
            return "score of the wrong type"
        copy, source = record["copy"], record["source"]
        pattern = re.escape(copy_stem(source, score)) + r"(?: \((?:[2-9]|[1-9]\d+)\))?" \
            + re.escape(PurePosixPath(source).suffix)
        if not is_copy_name(copy) or not re.fullmatch(pattern, copy):
            return f"copy {copy!r} is not a name guessDir gives {source!r}"
        return None

    return forged


# Makes the drawings' folder at a path: an object whose draw(photo, points, box, bones, stem=,
# pixels=) writes one photo's drawing and gives (where, a line to say or None), raising a
# TensorGuessError when it cannot (report/drawings_folder.DrawingsFolder).
Drawings = Callable[[Path], object]


def drawings_of(dest: Path, drawings: Drawings):
    """DEST/drawn, made if missing; a link or a file there stops the run (drawings stay in DEST)."""
    folder = dest / DRAWN
    try:
        folder.mkdir(exist_ok=True)
        mode = os.lstat(folder).st_mode
    except OSError as error:
        raise SortError(f"cannot create {folder} ({error.strerror or error}); choose a writable DEST") \
            from error
    if not stat.S_ISDIR(mode):
        raise SortError(f"{folder} is not a folder (a link or a file): guessDir draws only inside DEST; "
                        "move it away or choose another DEST")
    return drawings(folder)


def sort(scorer: PointsScorer, source: Path, dest: Path, drawings: Drawings, batch_size: int = 32,
         warn: Callable[[str], None] = print) -> SortSummary:
    """Copy, draw (into the folder `drawings` makes) and record each photo of `source` into `dest`;
    see the module docstring."""
    source, dest = opened_folders(source, dest)
    bones = scorer.skeleton.checked()
    try:
        copy_in_flight.check(dest)
        earlier = keypoints_file.read_earlier(dest / keypoints_file.KEYPOINTS_FILE, scorer.names)
    except (NotOurs, keypoints_file.KeypointsFileError) as error:
        raise SortError(str(error)) from error
    drawings = drawings_of(dest, drawings)
    manifest = Manifest(dest / MANIFEST, warn)
    try:
        summary = _sort_photos(scorer, source, dest, manifest, drawings, bones, batch_size, warn)
    except NotOurs as error:
        copy_in_flight.clear(dest)
        raise SortError(str(error)) from error
    except SortError:
        copy_in_flight.clear(dest)
        raise
    finally:
        manifest.close()
    copy_in_flight.clear(dest)
    # Written last and whole: a kill before leaves the earlier file, and the rerun adds these.
    document, added = keypoints_file.merged(earlier, _recorded(dest, scorer), scorer.names, bones)
    try:
        keypoints_file.write(dest / keypoints_file.KEYPOINTS_FILE, document)
    except OSError as error:
        raise SortError(f"cannot write {dest / keypoints_file.KEYPOINTS_FILE} ({error.strerror or error}); "
                        "fix that and run guessDir again: it adds the photos sorted") from error
    summary.notes = [f"Wrote {dest / keypoints_file.KEYPOINTS_FILE} ({len(document['images'])} photos, "
                     f"{added} new; each point's score in keypoint_scores) and the drawings in "
                     f"{dest / DRAWN}"]
    return summary


def _recorded(dest: Path, scorer: PointsScorer) -> list[dict]:
    """guesses.jsonl's records of this model's copies still in DEST, in order (read again: the
    manifest keeps in memory only what a rerun skips by)."""
    forged = note_problem(scorer.names)
    records = []
    with os.fdopen(open_ours(dest / MANIFEST, os.O_RDONLY), "rb") as reader:
        for line in reader:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("model") == scorer.digest and forged(record) is None \
                    and is_regular(dest / record["copy"]):
                records.append(record)
    return records


def _sort_photos(scorer, source, dest, manifest, drawings, bones, batch_size, warn) -> SortSummary:
    ours = ({dest / MANIFEST, dest / IN_FLIGHT, dest / keypoints_file.KEYPOINTS_FILE}
            | {dest / r.copy for r in manifest.earlier if r.copy is not None})
    done = {r.source for r in manifest.earlier
            if r.root == str(source) and r.model == scorer.digest
            and r.source is not None and r.copy is not None and is_regular(dest / r.copy)}
    summary = SortSummary(per_label={})
    forged = note_problem(scorer.names)

    def drawn_and_recorded(entry: dict, total: int) -> None:
        copy = dest / entry["copy"]
        try:
            pixels = read_image(copy)
            _, line = drawings.draw(copy, entry["points"], entry["box"], bones, stem=entry["copy"],
                                    pixels=pixels)
            if line:
                warn(line)
        except (UnreadableImage, TensorGuessError) as error:
            warn(f"tensor-guess: {entry['copy']} not drawn ({error}); its points are recorded")
        _append_or_stop(manifest, entry, copy, dest, summary, total)

    try:
        finished = copy_in_flight.resume(dest, source, scorer.digest, (), done, warn=warn, forged=forged,
                                         append=lambda record: drawn_and_recorded(record, 0))
    except OSError as error:
        raise _stopped(dest, error, summary, 0) from error
    if finished is not None:
        done.add(finished["source"])
        ours.add(dest / finished["copy"])
        summary.copied += 1
    drawn_folder = dest / DRAWN
    files, others = photos_to_sort(source, warn, ours, done, finished, summary,
                                   ours_too=lambda real: drawn_folder in real.parents)
    where = {"root": str(source), "model": scorer.digest}
    record_not_photos(others, source, where, manifest, dest, summary, len(files), warn)
    scored = ahead(scorer.score_files(files, batch_size, show_progress=True), 2 * batch_size)

    def entry_of(name: str, result: PointsResult) -> tuple[str, dict]:
        entry = {"source": name, **_answer(result), **where}
        return copy_stem(name, entry["score"]), entry

    copy_scored(scored, source, dest, manifest, where, summary, len(files), warn, entry_of,
                drawn_and_recorded)
    return summary


def _answer(result: PointsResult) -> dict:
    """The record's numbers of one photo, in its upright pixels; `size` is its width and height."""
    score = photo_score(result)
    return {"score": score, "box": [float(v) for v in result.box],
            "points": [[float(x), float(y)] for x, y in result.points],
            "point_scores": [float(s) if s == s else None for s in result.confidence],
            "size": list(result.size)}
