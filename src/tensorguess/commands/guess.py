"""guess: print what the model finds in each photo given (every label's score, or the points),
as its kind (kinds.py) words it; for a points model, --draw also draws each answer on its photo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tensorguess import strict_json
from tensorguess.commands.common import dir_argument, graph_flags, model_of, open_scorer, tta_flag
from tensorguess.errors import EXIT_FAILED, UsageError
from tensorguess.model_dir import POINTS


def add_arguments(guess: argparse.ArgumentParser) -> None:
    dir_argument(guess)
    guess.add_argument("images", type=Path, nargs="+", help="image files to classify")
    guess.add_argument("--json", action="store_true", help="print JSON instead of text")
    guess.add_argument("--draw", type=Path, metavar="FOLDER",
                       help="points models: also write each photo, with the box, the points and the "
                       "skeleton drawn, as FOLDER/<photo name>.png (created if missing; a drawing of "
                       "an earlier run is replaced, any other file kept: the drawing takes "
                       "<photo name>-2.png, saying so)")
    graph_flags(guess)
    tta_flag(guess)


def run(args) -> int:
    from tensorguess.data.images import Skipped, printable

    kind = model_of(args)
    if args.draw is not None and kind.name != POINTS:
        raise UsageError(f"--draw is for points models; {args.dir} holds a {kind.name} model "
                         "(guess prints its labels' scores)")
    describe, fields = kind.function("guess_lines"), kind.function("guess_document")
    failed = 0
    documents = []
    with open_scorer(args, kind) as classifier:
        drawings = drawings_folder(args.draw, classifier)
        for index, result in enumerate(classifier.score_files(args.images, args.batch_size)):
            if isinstance(result, Skipped):
                failed += 1
                print(result.warning(), file=sys.stderr)
                documents.append({"image": str(result.path), "error": result.reason})
                continue
            if drawings is not None and not drawn(drawings, classifier, result):
                failed += 1
            if args.json:
                documents.append({"image": str(result.path), **fields(classifier, result)})
                continue
            if len(args.images) > 1:
                print(f"{'' if index == 0 else chr(10)}==> {printable(result.path)} <==")
            for line in describe(classifier, result):
                print(line)
            sys.stdout.flush()
    if args.json:
        print(strict_json.dumps(documents, indent=1))
    return EXIT_FAILED if failed else 0


def drawings_folder(folder: Path | None, scorer):
    """The --draw folder, ready before the first photo is scored (its skeleton read, the folder
    made); None without --draw."""
    if folder is None:
        return None
    from tensorguess.report.drawings_folder import DrawingsFolder

    scorer.skeleton.checked()  # a model without its skeleton stops here, before any work
    return DrawingsFolder(folder)


def drawn(drawings, scorer, result) -> bool:
    """One photo's answer drawn; False, said on stderr, if the photo can no longer be read."""
    from tensorguess.data.images import Skipped, UnreadableImage

    try:
        _, note = drawings.draw(result.path, result.points, result.box, scorer.skeleton.checked())
    except UnreadableImage as error:
        print(Skipped(result.path, f"not drawn: {error}").warning(), file=sys.stderr)
        return False
    if note:
        print(note, file=sys.stderr)
    return True
