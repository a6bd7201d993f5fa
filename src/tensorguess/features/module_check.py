"""Refuse a feature-extractor SavedModel that could do more than compute, before it is loaded.

A module is a program: `tf.io.read_file` or `tf.io.write_file` inside its `__call__`
read and write the user's files when features are computed, and loading it can
already run its graph (a TF1 SavedModel's restore op and init op). So saved_model.pb
is parsed as a protobuf (nothing of it runs) and every node of every MetaGraphDef,
in its graph and in every function of its library, is checked before
`tf.saved_model.load` sees it:

- what computes features (the signatures, `__call__`, the object graph's functions,
  init ops, and any function nothing names) may hold only pure tensor ops
  (pure_ops.PURE_OPS) and ops on its own variables, which live in memory;
- the module's checkpoint machinery, the nodes and functions that the saver_def's
  restore op and save tensor alone reach, may also hold the checkpoint ops TensorFlow
  writes there: the restore side reads (RestoreV2: TF1's loader runs it on the
  module's own variables/ folder), the save side writes (SaveV2, MergeV2Checkpoints),
  and that side is never run: TF2's loader restores variables with ops it builds
  itself, and tensor-guess never saves a module (export freezes its weights).

A part reached from both sides gets the stricter rule. Calls go through function
attributes (`PartitionedCall`, `If`, `While`) or a node whose op names a library
function; a call to a function the library does not define is refused too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tensorguess.pure_ops import PURE_OPS, attribute_calls, unknown_ops

# Resource and TF1 variables: handles to tensors held in memory, read and assigned.
VARIABLE_OPS = frozenset("""
    VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp
    VarIsInitializedOp ResourceGather DestroyResourceOp DisableCopyOnRead
    VariableV2 Variable Assign AssignAdd AssignSub IsVariableInitialized
""".split())
# Read a checkpoint into the variables: what the restore side of the saver holds.
RESTORE_OPS = frozenset("RestoreV2 Restore RestoreSlice".split())
# Write a checkpoint and name its shards: what the save side of the saver holds.
SAVE_OPS = frozenset("""
    SaveV2 Save SaveSlices MergeV2Checkpoints ShardedFilename ShardedFilespec StringJoin
    StaticRegexFullMatch RegexFullMatch
""".split())
COMPUTE, RESTORE, SAVE = "compute", "restore", "save"
ALLOWED = {COMPUTE: PURE_OPS | VARIABLE_OPS, RESTORE: PURE_OPS | VARIABLE_OPS | RESTORE_OPS,
           SAVE: PURE_OPS | VARIABLE_OPS | SAVE_OPS}


class ModuleRefused(Exception):
    """The module is refused; the message, one line, names it and says what to do."""


def read_saved_model(path: Path):
    """The SavedModel protobuf of a module folder, parsed (nothing in it runs)."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    except (OSError, DecodeError) as error:
        raise ModuleRefused(f"cannot read {Path(path) / 'saved_model.pb'} as a SavedModel ({error}); "
                            "point --tfhub_module at a SavedModel folder") from error
    return saved


def called_functions(node, defined: set[str]) -> set[str]:
    """The library functions a node calls: through its attributes, or as its op."""
    return ({node.op} & defined) | attribute_calls(node)


def node_name(tensor: str) -> str:
    """`^name`, `name:1` or `name` -> name."""
    return tensor.lstrip("^").split(":")[0]


class MetaGraphParts:
    """The nodes and functions of one MetaGraphDef, and who reaches what."""

    def __init__(self, meta_graph):
        self.meta_graph = meta_graph
        graph = meta_graph.graph_def
        self.nodes = {node.name: node for node in graph.node}
        self.functions = {function.signature.name: function for function in graph.library.function}
        self.defined = set(self.functions)

    def reach(self, roots: Iterable[str], functions: Iterable[str] = ()) -> tuple[set, set]:
        """Graph nodes that `roots` need (through inputs) and the functions all of them call."""
        nodes, stack = set(), [name for name in roots if name in self.nodes]
        while stack:
            name = stack.pop()
            if name in nodes:
                continue
            nodes.add(name)
            stack.extend(node_name(i) for i in self.nodes[name].input if node_name(i) in self.nodes)
        called = set()
        for name in nodes:
            called |= called_functions(self.nodes[name], self.defined)
        return nodes, self.closure(called | set(functions))

    def closure(self, names: set[str]) -> set[str]:
        """The functions `names` are, and every function they call, to any depth."""
        seen, stack = set(), list(names)
        while stack:
            name = stack.pop()
            if name in seen or name not in self.functions:
                continue
            seen.add(name)
            for node in self.functions[name].node_def:
                stack.extend(called_functions(node, self.defined))
        return seen

    def sides(self) -> dict[tuple[str, str], str]:
        """("node" | "function", name) -> COMPUTE, RESTORE or SAVE: which rule it is checked by."""
        saver = self.meta_graph.saver_def
        restore = self.reach([node_name(saver.restore_op_name)] if saver.restore_op_name else [])
        save = self.reach([node_name(saver.save_tensor_name)] if saver.save_tensor_name else [])
        saver_nodes = restore[0] | save[0]
        # Everything else is computation: every other node and what it needs, every function
        # the object graph names, and any function that neither saver side reaches.
        object_functions = set()
        for item in self.meta_graph.object_graph_def.nodes:
            object_functions.update(item.function.concrete_functions)
            if item.bare_concrete_function.concrete_function_name:
                object_functions.add(item.bare_concrete_function.concrete_function_name)
            for saveable in item.saveable_objects.values():
                object_functions.update((saveable.save_function, saveable.restore_function))
        object_functions |= self.defined - restore[1] - save[1]
        compute = self.reach([name for name in self.nodes if name not in saver_nodes], object_functions)
        sides = {}
        for kind, index in (("node", 0), ("function", 1)):
            for name in (self.nodes if kind == "node" else self.functions):
                if name in compute[index]:
                    sides[kind, name] = COMPUTE
                elif name in restore[index]:
                    sides[kind, name] = RESTORE
                elif name in save[index]:
                    sides[kind, name] = SAVE
                else:  # reached by nothing: held to the strictest rule all the same
                    sides[kind, name] = COMPUTE
        return sides

    def ops(self):
        """(op, where, side) for every node of the graph and of every library function."""
        sides = self.sides()
        for name, node in self.nodes.items():
            yield node.op, f"node {name!r}", sides["node", name]
        for name, function in self.functions.items():
            for node in function.node_def:
                yield node.op, f"function {name!r}", sides["function", name]

    def undefined_calls(self) -> set[str]:
        """Functions called through attributes that the library does not define."""
        everything = list(self.nodes.values())
        for function in self.functions.values():
            everything.extend(function.node_def)
        called = set()
        for node in everything:
            called |= attribute_calls(node)
        return called - self.defined


def refusal(path: Path, trusted: bool = False) -> str | None:
    """Why loading the module in folder `path` is refused, in one line; None when it may run.

    A trusted module may hold any op TensorFlow knows; an unknown op is refused either way,
    since TensorFlow cannot load it.
    """
    import tensorflow as tf

    try:
        saved = read_saved_model(path)
    except ModuleRefused as error:
        return str(error)
    found: dict[str, str] = {}  # op -> where it is first met
    refused: dict[str, str] = {}
    missing: set[str] = set()
    for meta_graph in saved.meta_graphs:
        parts = MetaGraphParts(meta_graph)
        for op, where, side in parts.ops():
            if op in parts.defined:
                continue  # a call of a library function, checked as that function
            found.setdefault(op, where)
            if op not in ALLOWED[side]:
                refused.setdefault(op, where)
        missing |= parts.undefined_calls()
    unknown = unknown_ops(found)
    if unknown:
        return (f"cannot load the module {path}: it uses operations TensorFlow {tf.__version__} does "
                f"not know ({', '.join(unknown)}); it needs the TensorFlow build that made it")
    if trusted or (not refused and not missing):
        return None
    held = []
    if refused:
        first = sorted(refused)[0]
        held.append(f"operations that do more than compute on tensors ({', '.join(sorted(refused))}; "
                    f"{first} in {refused[first]})")
    if missing:
        held.append(f"calls to functions it does not define ({', '.join(sorted(missing))})")
    return (f"refusing to load the module {path}: it holds {' and '.join(held)}, which no image "
            "module needs; pass --trust_graph only if you trust whoever made it")
