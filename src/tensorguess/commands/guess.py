"""guess: print the scores of every label for each photo given."""

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
    failed = 0
    documents = []
    with open_scorer(args, kind) as classifier:
        for index, result in enumerate(classifier.score_files(args.images, args.batch_size)):
            if isinstance(result, Skipped):
                failed += 1
                print(result.warning(), file=sys.stderr)
                documents.append({"image": str(result.path), "error": result.reason})
                continue
            ranked = classifier.ranked(result.scores)
            if args.json:
                documents.append({"image": str(result.path), "label": ranked[0][0],
                                  "score": ranked[0][1], "scores": dict(ranked)})
                continue
            if len(args.images) > 1:
                print(f"{'' if index == 0 else chr(10)}==> {printable(result.path)} <==")
            for label, score in ranked:
                print(f"{label} (score = {score:.5f})")
            sys.stdout.flush()
    if args.json:
        print(strict_json.dumps(documents, indent=1))
    return EXIT_FAILED if failed else 0
