"""The exported graph's names made independent of the process that wrote it.

TensorFlow names what it generates with a process-wide counter: the module's inlined
nodes (`module/3660`, `module/Func/StatefulPartitionedCall/input/_12`) and the decoding's
branch functions (`cond_true_4540`). The same model exported after other work in the
process (a fine-tuning that lost, a second training) would then differ in bytes though
not in what it computes. Here each generated node name becomes its scope and a digest
of what the node is (its operation, attributes and inputs), each generated function name
is renumbered in the order the graph names it, the generated nodes are sorted by name in
the places they held (every other node keeps its place) and the functions by name, so
the same model is the same bytes: a fine-tuning kept back leaves the graph a
run without it writes (head/fine_tune_choice.py).
"""

from __future__ import annotations

import hashlib
import re

# The last part of a generated node name (all digits, or _digits), and a generated function's
# trailing uid.
_NODE = re.compile(r"^(?P<scope>.*/)(?P<sep>_?)\d+$")
_FUNCTION = re.compile(r"^(?P<base>.+)_\d+$")


def canonical(graph_def):
    """`graph_def` with its generated names made from what they name, those nodes sorted by
    name in the places they held, and its functions sorted by name: the same object, changed."""
    order = _referenced_functions(graph_def)
    functions = _renumber(order, _FUNCTION, lambda m, k: f"{m['base']}_{k}")
    for node in graph_def.node:
        _rename_function_attrs(node.attr, functions)
    for function in graph_def.library.function:
        function.signature.name = functions.get(function.signature.name, function.signature.name)
        for inner in function.node_def:
            _rename_function_attrs(inner.attr, functions)
    nodes = _content_names(graph_def)
    generated = [at for at, node in enumerate(graph_def.node) if node.name in nodes]
    for node in graph_def.node:
        node.name = nodes.get(node.name, node.name)
        inputs = [_renamed_input(name, nodes) for name in node.input]
        del node.input[:]
        node.input.extend(inputs)
    # The generated nodes sorted by their new names among the places they held; every other
    # node keeps its place (export/weight_grid.py reads the convolutions in graph order).
    ordered = sorted((graph_def.node[at] for at in generated), key=lambda n: n.name)
    copies = [type(node)() for node in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    for at, copy in zip(generated, copies, strict=True):
        graph_def.node[at].CopyFrom(copy)
    _sort(graph_def.library.function, lambda f: f.signature.name)
    return graph_def


def _sort(repeated, key) -> None:
    ordered = sorted(repeated, key=key)
    copies = [type(item)() for item in ordered]
    for copy, item in zip(copies, ordered, strict=True):
        copy.CopyFrom(item)
    del repeated[:]
    repeated.extend(copies)


def _content_names(graph_def) -> dict[str, str]:
    """A new name for each generated node name: its scope and a digest of its operation, its
    attributes and its inputs (their new names), so that it no longer depends on a counter.
    Identical nodes get -1, -2... in the graph's order (they compute the same)."""
    by_name = {node.name: node for node in graph_def.node}
    named: dict[str, str] = {}
    taken: set[str] = set()

    def name_of(name: str, visiting: frozenset) -> str:
        if name in named:
            return named[name]
        match = _NODE.match(name)
        if not match or name not in by_name or name in visiting:
            return name
        node = by_name[name]
        digest = hashlib.sha256(node.op.encode())
        for key in sorted(node.attr):
            digest.update(key.encode() + node.attr[key].SerializeToString(deterministic=True))
        for item in node.input:
            control = item.startswith("^")
            base, colon, port = item.lstrip("^").partition(":")
            digest.update(("^" if control else "").encode() + name_of(base, visiting | {name}).encode()
                          + (colon + port).encode())
        chosen = f"{match['scope']}{match['sep']}{digest.hexdigest()[:16]}"
        candidate, count = chosen, 0
        while candidate in taken:
            count += 1
            candidate = f"{chosen}-{count}"
        taken.add(candidate)
        named[name] = candidate
        return candidate

    for node in graph_def.node:
        name_of(node.name, frozenset())
    return {old: new for old, new in named.items() if old != new}


def _renumber(names: list[str], pattern: re.Pattern, make) -> dict[str, str]:
    """Each name matching `pattern`, numbered by its kind (all but the number) in order of appearance."""
    counts: dict[str, int] = {}
    renamed: dict[str, str] = {}
    for name in names:
        match = pattern.match(name)
        if not match or name in renamed:
            continue
        kind = make(match, "")
        counts[kind] = counts.get(kind, -1) + 1
        renamed[name] = make(match, counts[kind])
    return renamed


def _renamed_input(name: str, nodes: dict[str, str]) -> str:
    control = name.startswith("^")
    bare = name[1:] if control else name
    base, colon, port = bare.partition(":")
    return ("^" if control else "") + nodes.get(base, base) + colon + port


def _referenced_functions(graph_def) -> list[str]:
    """The library's function names in the order the graph's nodes, then the functions, name them."""
    order: list[str] = []
    for node in graph_def.node:
        order.extend(_function_names(node.attr))
    by_name = {f.signature.name: f for f in graph_def.library.function}
    at = 0
    while at < len(order):  # the functions those name, and so on
        for inner in by_name[order[at]].node_def if order[at] in by_name else ():
            order.extend(name for name in _function_names(inner.attr) if name not in order)
        at += 1
    order.extend(sorted(by_name))  # any the nodes do not name, last
    return list(dict.fromkeys(order))


def _function_names(attrs) -> list[str]:
    names = []
    for key in sorted(attrs):
        value = attrs[key]
        if value.HasField("func"):
            names.append(value.func.name)
        names.extend(f.name for f in value.list.func)
    return names


def _rename_function_attrs(attrs, functions: dict[str, str]) -> None:
    for key in attrs:
        value = attrs[key]
        if value.HasField("func"):
            value.func.name = functions.get(value.func.name, value.func.name)
        for item in value.list.func:
            item.name = functions.get(item.name, item.name)
