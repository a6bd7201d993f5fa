"""guess: print what the model finds in each photo given (every label's score, or the points),
as its kind (kinds.py) words it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tensorguess import strict_json
from tensorguess.commands.common import dir_argument, graph_flags, model_of, open_scorer, tta_flag
from tensorguess.errors import EXIT_FAILED


def add_arguments(guess: argparse.ArgumentParser) -> None:
    dir_argument(guess)
    guess.add_argument("images", type=Path, nargs="+", help="image files to classify")
    guess.add_argument("--json", action="store_true", help="print JSON instead of text")
    graph_flags(guess)
    tta_flag(guess)


def run(args) -> int:
    from tensorguess.data.images import Skipped, printable

    kind = model_of(args)
    describe, fields = kind.function("guess_lines"), kind.function("guess_document")
    failed = 0
    documents = []
    with open_scorer(args, kind) as classifier:
        for index, result in enumerate(classifier.score_files(args.images, args.batch_size)):
            if isinstance(result, Skipped):
                failed += 1
                print(result.warning(), file=sys.stderr)
                documents.append({"image": str(result.path), "error": result.reason})
                continue
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
