"""Every relative link in README.md and docs/*.md leads to a file, and every #anchor to a heading in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose(text: str) -> list[str]:
    """The lines outside fenced and indented code blocks, inline code spans blanked."""
    lines, fenced, previous_blank = [], False, True
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        indented = line.startswith(("    ", "\t")) and previous_blank and not lines_continue(lines)
        previous_blank = not line.strip() or (previous_blank and indented)
        if fenced or indented:
            lines.append("")
            continue
        lines.append(re.sub(r"`[^`]*`", "``", line))
    return lines


def lines_continue(lines: list[str]) -> bool:
    """Whether the last prose line is a list item, whose indented lines continue it."""
    for line in reversed(lines):
        if line.strip():
            return bool(re.match(r"\s*([-*+]|\d+\.)\s", line)) or line.startswith("  ")
    return False


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not match:
            continue
        base = slug(match[1])
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    return [match[1] for line in prose(path.read_text(encoding="utf-8")) for match in LINK.finditer(line)]


def test_slugs_follow_github():
    assert slug("7. Scale: `bench/scale.py` (with `bench/scale_photos.py`)") == (
        "7-scale-benchscalepy-with-benchscale_photospy")
    assert slug("`bash evaluate.sh DIR LABELLED_DIR [OUT_DIR]`") == "bash-evaluatesh-dir-labelled_dir-out_dir"
    assert slug("What a container may touch") == "what-a-container-may-touch"


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_resolve(doc):
    broken = []
    for target in links(doc):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:...
            continue
        file, _, anchor = target.partition("#")
        where = (doc.parent / file).resolve() if file else doc
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            broken.append(f"{target}: no heading #{anchor} in {where.relative_to(REPO)}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)
