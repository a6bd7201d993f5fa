"""Refuse a GraphDef that could do more than compute: every op must be a pure tensor op.

A frozen graph is a program. `ReadFile`, `WriteFile`, `MatchingFiles`, `PyFunc`,
`ImmutableConst` (which maps a file into memory) and friends let a shared
`retrained_graph.pb` read or write the user's files when it is merely run, so
before tensor-guess runs a graph, ours or one made by the old retrain.py, each
node's op, in the graph and in every function of its library, is checked
against the ops that classifier graphs are made of: decoding, resizing,
convolutions, matrix products, activations, softmax, shape and control-flow
plumbing. Functions may be called (`If`, `While`, `PartitionedCall`) only when
they are defined in the graph's own library, where their ops are checked too.
"""

from __future__ import annotations

from tensorguess.pure_ops import PURE_OPS, attribute_calls, unknown_ops


def graph_ops(graph_def) -> dict[str, list[str]]:
    """op -> the names of the nodes (graph and library functions) that use it."""
    found: dict[str, list[str]] = {}
    for node in graph_def.node:
        found.setdefault(node.op, []).append(node.name)
    for function in graph_def.library.function:
        for node in function.node_def:
            found.setdefault(node.op, []).append(f"{function.signature.name}/{node.name}")
    return found


def undefined_functions(graph_def) -> list[str]:
    """Functions that nodes call by name but the graph's library does not define."""
    defined = {function.signature.name for function in graph_def.library.function}
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    called: set[str] = set()
    for node in nodes:
        called |= attribute_calls(node)
    return sorted(called - defined)


def refusal(graph_def, path, trusted: bool = False) -> str | None:
    """Why running `graph_def` (read from `path`) is refused, in one line; None when it may run.

    A trusted graph may hold any op TensorFlow knows; an unknown op is refused either way,
    since TensorFlow cannot run it.
    """
    import tensorflow as tf

    ops = graph_ops(graph_def)
    unknown = unknown_ops(ops)
    if unknown:
        return (f"cannot run {path}: it uses operations TensorFlow {tf.__version__} does not know "
                f"({', '.join(unknown)}); it needs the TensorFlow build that made it")
    if trusted:
        return None
    impure = sorted(op for op in ops if op not in PURE_OPS)
    missing = undefined_functions(graph_def)
    if not impure and not missing:
        return None
    held = []
    if impure:
        held.append(f"operations that do more than compute on tensors ({', '.join(impure)}; "
                    f"node {ops[impure[0]][0]!r})")
    if missing:
        held.append(f"calls to functions it does not define ({', '.join(missing)})")
    return (f"refusing to run {path}: it holds {' and '.join(held)}, which no classifier "
            "needs; pass --trust_graph only if you trust whoever made it")
