"""DEST/keypoints.json of a points sort: the model's answers as COCO keypoints, which train.sh reads
(data/keypoint_coco.py) and labelling tools (CVAT, Label Studio, mmpose) open, to be corrected
and trained on again.

- images: one a copy, `file_name` the copy's name in DEST (so the file is read with DEST as the
  photos' folder), `width` and `height` of the photo as it stands upright by its EXIF orientation;
- annotations: one a copy, `keypoints` the x, y, v triples in those pixels (continuous
  coordinates, as guess gives them; v = 2 for every point), `bbox` the square the points were
  read in, cut to the photo, `score` the mean of the points' scores, and `keypoint_scores` (the
  field mmpose writes; the reader ignores it) each point's score, null where the model gives none;
- categories: one, with the point names and the skeleton (1-based, as COCO writes it).

The file is written whole (atomic_write) and kept between runs: an earlier one is read and
everything it holds stays as it is (a person may have corrected it), the photos it does not
name yet are added. A file that is not such a file for these points (a link, not COCO keypoints,
other point names) is never written over: the sort refuses to start.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from tensorguess import strict_json
from tensorguess.atomic_write import write_atomically
from tensorguess.sort.safe_open import NotOurs, open_ours

KEYPOINTS_FILE = "keypoints.json"
MAX_FILE = 1 << 30  # what is read of an earlier file at most
CATEGORY_ID = 1


class KeypointsFileError(Exception):
    """DEST's keypoints.json cannot be kept and added to; the message names it and says what to do."""


def _score(value) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def read_earlier(path: Path, names: list[str]) -> dict | None:
    """The earlier run's file, checked to be COCO keypoints of these `names`; None when there is none."""
    try:
        fd = open_ours(path, os.O_RDONLY, max_size=MAX_FILE)
    except FileNotFoundError:
        return None
    except (NotOurs, OSError) as error:
        raise KeypointsFileError(f"{error}; keypoints.json is left as it is: move it away or choose "
                                 "another DEST") from error
    with os.fdopen(fd, "rb") as reader:
        data = reader.read()
    why = None
    try:
        document = json.loads(data)
    except ValueError as error:
        document, why = None, f"not JSON ({error})"
    if why is None:
        why = _not_ours(document, names)
    if why is not None:
        raise KeypointsFileError(f"{path} is not a keypoints file of this model's points ({why}); it is "
                                 "left as it is: move it away or choose another DEST")
    return document


def _not_ours(document, names: list[str]) -> str | None:
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list)
                                                 for key in ("images", "annotations", "categories")):
        return "no images, annotations and categories lists"
    with_points = [c for c in document["categories"] if isinstance(c, dict) and c.get("keypoints")]
    if len(with_points) != 1 or with_points[0].get("keypoints") != names:
        return "its category's keypoints are not the model's point names"
    if not all(isinstance(image, dict) for image in document["images"]):
        return "an entry of images is not an object"
    return None


def annotation_of(record: dict) -> tuple[dict, dict]:
    """(image, annotation) of one manifest record of a copy, their ids left to `merged`."""
    width, height = record["size"]
    x0, y0, x1, y1 = record["box"]
    x0, y0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
    x1, y1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    triples = [value for x, y in record["points"] for value in (float(x), float(y), 2)]
    image = {"file_name": record["copy"], "width": width, "height": height}
    annotation = {"category_id": CATEGORY_ID, "keypoints": triples, "num_keypoints": len(record["points"]),
                  "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                  "keypoint_scores": [_score(s) for s in record["point_scores"]]}
    if _score(record.get("score")) is not None:
        annotation["score"] = float(record["score"])
    return image, annotation


def merged(earlier: dict | None, records: list[dict], names: list[str], bones) -> tuple[dict, int]:
    """The earlier file (kept whole) with the records whose copy it does not name added; and how
    many were added."""
    document = earlier if earlier is not None else {
        "info": {"description": "guesses of tensor-guess guessDir: correct them, then train.sh"},
        "images": [], "annotations": [],
        "categories": [{"id": CATEGORY_ID, "name": "object", "supercategory": "object",
                        "keypoints": list(names), "skeleton": [[a + 1, b + 1] for a, b in bones]}]}
    category_id = next(c.get("id") for c in document["categories"] if isinstance(c, dict)
                       and c.get("keypoints"))
    named = {image.get("file_name") for image in document["images"]}
    numbers = [value.get("id") for value in document["images"] + document["annotations"]
               if isinstance(value, dict)]
    next_id = max([n for n in numbers if isinstance(n, int) and not isinstance(n, bool)], default=0) + 1
    added = 0
    for record in records:
        if record["copy"] in named:
            continue
        image, annotation = annotation_of(record)
        image["id"], annotation["id"], annotation["image_id"] = next_id, next_id, next_id
        annotation["category_id"] = category_id
        document["images"].append(image)
        document["annotations"].append(annotation)
        named.add(record["copy"])
        next_id += 1
        added += 1
    return document, added


def write(path: Path, document: dict) -> None:
    """The whole file, or nothing (a kill leaves the earlier one)."""
    write_atomically(path, (strict_json.dumps(document, indent=1) + "\n").encode("utf-8"))
