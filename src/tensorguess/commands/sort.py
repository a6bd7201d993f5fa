"""sort (guessDir.sh): copy each photo of SRC to DEST/<label>--<score>.<ext>."""

from __future__ import annotations

import argparse
from pathlib import Path

from tensorguess.commands.common import dir_argument, engine_flags, graph_flags, model_of, open_scorer, warn
from tensorguess.errors import UsageError


def add_arguments(sort: argparse.ArgumentParser) -> None:
    dir_argument(sort)
    sort.add_argument("source", type=Path, help="folder of images to sort (only read)")
    sort.add_argument("dest", type=Path, help="folder to copy into (created if missing)")
    graph_flags(sort)
    engine_flags(sort)


def run(args) -> int:
    from tensorguess.sort.folder import SortError, check_dest
    from tensorguess.sort.names import MANIFEST

    if not args.source.is_dir():
        raise UsageError(f"source folder {args.source} does not exist or is not a folder")
    if args.source.resolve() == args.dest.resolve():
        raise UsageError("SRC and DEST must be different folders: sources are never touched")
    try:
        check_dest(args.dest)  # before the graph is loaded
    except SortError as error:
        raise UsageError(str(error)) from error
    kind = model_of(args)
    with open_scorer(args, kind) as classifier:
        summary = kind.function("sort")(classifier, args.source, args.dest, args.batch_size, warn=warn)
    counts = ", ".join(f"{label} {n}" for label, n in sorted(summary.per_label.items()))
    if summary.already_sorted:
        print(f"Skipped {summary.already_sorted} photos of {args.source} already sorted into "
              f"{args.dest} by this classifier (recorded in {MANIFEST})")
    print(f"Copied {summary.copied} images into {args.dest}" + (f" ({counts})" if counts else "")
          + (f"; {summary.unreadable} unreadable, listed in {args.dest / MANIFEST}"
             if summary.unreadable else ""))
    for line in summary.notes:
        print(line)
    return 0
