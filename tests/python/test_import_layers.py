"""The package's imports follow its stages: no import of a later stage, no import circle.

Every module of src/tensorguess is parsed with `ast`, imports inside functions included (an
import deferred for speed is still a dependency, and must not hide a circle). The stages are
written here and in docs/development.md's layout table, which this test keeps equal.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "tensorguess"
LAYOUT_DOC = ROOT / "docs" / "development.md"

# In data-flow order, numbered from 0 as in docs/development.md. A stage is a list of units, a unit
# the top-level folders and files of the package (`__init__` is the package's own) that may import
# one another. A module imports only its own unit and earlier stages; the units of one stage are
# independent of one another.
STAGES: list[list[tuple[str, ...]]] = [
    [("__init__", "errors", "model_dir", "stderr_noise", "strict_json", "atomic_write", "pure_ops", "metrics",
      "point_metrics", "publish", "watchdog")],
    [("data",)],
    [("features",)],
    [("head",)],
    [("checks",)],
    [("export",)],
    [("score",)],
    [("engine",), ("sort",), ("report",), ("serve",)],
    [("config",)],
    [("retrain", "train_points", "deploy", "deploy_points", "points_guessdir")],
    [("kinds",)],
    [("commands",)],
    [("cli", "__main__")],
]
PLACE = {name: (stage, unit) for stage, units in enumerate(STAGES) for unit in units for name in unit}


class Edge(NamedTuple):
    source: str  # dotted module names
    target: str
    where: str  # path:line of the import


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def top_level(module: str) -> str:
    """The folder or file of the package a module belongs to: its unit's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path, known: dict[str, Path], package_dir: Path = PACKAGE) -> Iterator[Edge]:
    """Every import of the package in the file, at any depth, as the module it loads."""
    source = module_name(path, package_dir)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    where = path.relative_to(package_dir.parents[1]).as_posix()  # from the repository's root
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, one level up per extra dot
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from X import n` loads the module X.n when there is one, else X itself.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "tensorguess" or target.startswith("tensorguess."):
                yield Edge(source, target, f"{where}:{node.lineno}")


def all_edges(package: Path = PACKAGE) -> list[Edge]:
    known = modules(package)
    return [edge for path in known.values() for edge in imports(path, known, package)]


def backward_imports(edges: list[Edge]) -> list[str]:
    wrong = []
    for edge in edges:
        (stage, unit), (to_stage, to_unit) = PLACE[top_level(edge.source)], PLACE[top_level(edge.target)]
        if to_stage > stage:
            wrong.append(f"{edge.where}: {edge.source} imports {edge.target}, a later stage")
        elif to_stage == stage and to_unit != unit:
            wrong.append(f"{edge.where}: {edge.source} imports {edge.target}, whose folder is of the "
                         "same stage and must stay independent of it")
    return wrong


def circles(edges: list[Edge]) -> list[str]:
    """Each import circle between modules once, as the chain of its imports (Tarjan's SCCs)."""
    graph: dict[str, dict[str, str]] = {}
    for edge in edges:
        if edge.source != edge.target:
            graph.setdefault(edge.source, {}).setdefault(edge.target, edge.where)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(chain(sorted(component), graph))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def chain(component: list[str], graph: dict[str, dict[str, str]]) -> str:
    """One circle through the component's first module, each import with its file and line."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first: the shortest way back to `start`
        node = queue.pop(0)
        for target in sorted(graph.get(node, {})):
            if target == start:
                steps = paths[node] + [start]
                return " -> ".join(f"{a} ({graph[a][b]})" for a, b in pairwise(steps)) + f" -> {start}"
            if target in members and target not in paths:
                paths[target] = paths[node] + [target]
                queue.append(target)
    return ", ".join(component)


def test_every_module_has_a_stage():
    unplaced = sorted({top_level(name) for name in modules()} - set(PLACE))
    assert not unplaced, (f"{unplaced}: give each a place in STAGES ({Path(__file__).name}) and in "
                          "docs/development.md's layout table")


def test_no_module_imports_a_later_stage_or_a_sibling():
    wrong = backward_imports(all_edges())
    assert not wrong, "imports against the stages:\n" + "\n".join(wrong)


def test_no_import_circles():
    found = circles(all_edges())
    assert not found, "import circles:\n" + "\n".join(found)


def test_the_layout_table_lists_the_stages_in_order():
    """docs/development.md's table of stages: one row per unit, its stage's number first."""
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", LAYOUT_DOC.read_text(), re.MULTILINE)
    documented = [(int(number), tuple(name.rstrip("/") for name in re.findall(r"`([^`]+)`", cell)))
                  for number, cell in rows]
    assert documented == [(stage, unit) for stage, units in enumerate(STAGES) for unit in units]


def test_the_checks_find_what_they_are_for(tmp_path):
    """A planted back-import (inside a function), an import between two folders of one stage and
    a circle are caught, named by file and line."""
    package = tmp_path / "src" / "tensorguess"
    for folder in ("", "data", "score", "sort", "serve"):
        (package / folder).mkdir(parents=True, exist_ok=True)
        (package / folder / "__init__.py").write_text("")
    (package / "data" / "images.py").write_text(
        "def load():\n    from tensorguess.score import predict\n")
    (package / "score" / "predict.py").write_text("from ..data import images\n")
    (package / "sort" / "folder.py").write_text("import tensorguess.serve\n")
    edges = all_edges(package)
    assert backward_imports(edges) == [
        "src/tensorguess/data/images.py:2: tensorguess.data.images imports "
        "tensorguess.score.predict, a later stage",
        "src/tensorguess/sort/folder.py:1: tensorguess.sort.folder imports tensorguess.serve, "
        "whose folder is of the same stage and must stay independent of it"]
    assert circles(edges) == [
        "tensorguess.data.images (src/tensorguess/data/images.py:2) -> tensorguess.score.predict "
        "(src/tensorguess/score/predict.py:1) -> tensorguess.data.images"]
