"""fetch-module: download a TF Hub module into the cache and print its folder."""

from __future__ import annotations

import argparse


def add_arguments(fetch: argparse.ArgumentParser) -> None:
    fetch.add_argument("handle", help="TF Hub module URL or handle")


def run(args) -> int:
    from tensorguess.features.modules import resolve_path

    print(resolve_path(args.handle))
    return 0
