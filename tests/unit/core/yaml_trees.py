"""Hypothesis strategies for YAML documents built from generated structures, each with what a
faithful reader must make of it.

A tree is nested lists, mappings (whose keys come from a few names, so some mappings give a
key twice) and scalars; any node may carry an anchor, and an alias leaf names one of the
anchors written before it (possibly one still open around it, which is recursive). Written
in flow or block style, a tree comes with its model: the data with aliases expanded, the
nodes a reader counts (an alias counting every node it repeats), how deep the data nests,
and whether it gives a key twice or holds a recursive alias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

KEYS = ("a", "b", "name", "steps")

Tree = tuple[Any, ...]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.text(max_size=6),
)


def trees(
    keys: tuple[str, ...] = KEYS, values: tuple[Any, ...] = (), max_leaves: int = 24
) -> st.SearchStrategy[Tree]:
    """Trees whose mapping keys come from ``keys`` and whose scalars are any, or ``values``."""
    leaves = st.one_of(scalars, st.sampled_from(values)) if values else scalars
    return st.recursive(
        st.one_of(
            st.tuples(st.just("scalar"), st.booleans(), leaves),
            st.tuples(st.just("alias"), st.integers(min_value=0, max_value=7)),
        ),
        lambda inner: st.one_of(
            st.tuples(st.just("list"), st.booleans(), st.lists(inner, max_size=4)),
            st.tuples(
                st.just("map"),
                st.booleans(),
                st.lists(st.tuples(st.sampled_from(keys), inner), max_size=5),
            ),
        ),
        max_leaves=max_leaves,
    )


@dataclass
class _Written:
    """A node as it will be written: an anchor, an alias, a scalar or children."""

    kind: str  # "scalar", "alias", "list", "map"
    anchor: str | None = None
    text: str = ""  # a scalar's or an alias's text
    items: list[tuple[str | None, _Written]] = field(default_factory=list)


@dataclass
class Model:
    """What a faithful reader makes of a written tree."""

    text: str
    data: Any = None
    nodes: int = 0
    depth: int = 0
    twice: bool = False
    recursive: bool = False

    def refused_by(self, max_nodes: int, max_depth: int) -> bool:
        return self.twice or self.recursive or self.nodes > max_nodes or self.depth > max_depth


@dataclass
class _Anchor:
    name: str
    data: Any = None
    nodes: int = 0
    height: int = 0
    open: bool = True


class _Writer:
    def __init__(self) -> None:
        self.anchors: list[_Anchor] = []
        self.model = Model("")

    def node(self, tree: Tree, depth: int) -> tuple[_Written, Any, int, int]:
        """``tree`` inside ``depth`` collections: as written, its data, nodes and height."""
        kind = tree[0]
        if kind == "alias":
            if not self.anchors:
                return _Written("scalar", text="null"), None, 1, 0
            named = self.anchors[tree[1] % len(self.anchors)]
            if named.open:
                self.model.recursive = True
            self.model.depth = max(self.model.depth, depth + named.height)
            return _Written("alias", text=f"*{named.name}"), named.data, named.nodes, named.height
        anchor = _Anchor(f"n{len(self.anchors)}") if tree[1] else None
        if anchor is not None:
            self.anchors.append(anchor)
        if kind == "scalar":
            written = _Written("scalar", anchor and anchor.name, _scalar(tree[2]))
            data, nodes, height = tree[2], 1, 0
        else:
            self.model.depth = max(self.model.depth, depth + 1)
            written = _Written(kind, anchor and anchor.name)
            nodes, height = 1, 1
            items: list[Any] = []
            keys: set[str] = set()
            for entry in tree[2]:
                key, child = (None, entry) if kind == "list" else entry
                if key is not None:
                    nodes += 1
                    self.model.twice |= key in keys
                    keys.add(key)
                child_written, child_data, child_nodes, child_height = self.node(child, depth + 1)
                written.items.append((key, child_written))
                items.append((key, child_data))
                nodes += child_nodes
                height = max(height, child_height + 1)
            data = [d for _, d in items] if kind == "list" else dict(items)
        if anchor is not None:
            anchor.data, anchor.nodes, anchor.height, anchor.open = data, nodes, height, False
        return written, data, nodes, height


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + "".join(_escaped(c) for c in value) + '"'


def _escaped(char: str) -> str:
    """``char`` inside a double-quoted YAML scalar: printable ASCII as is, the rest escaped."""
    code = ord(char)
    if char in '"\\':
        return "\\" + char
    if 0x20 <= code < 0x7F:
        return char
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _flow(node: _Written) -> str:
    prefix = f"&{node.anchor} " if node.anchor else ""
    if node.kind in ("scalar", "alias"):
        return prefix + node.text
    if node.kind == "list":
        return prefix + "[" + ", ".join(_flow(child) for _, child in node.items) + "]"
    return prefix + "{" + ", ".join(f"{key}: {_flow(child)}" for key, child in node.items) + "}"


def _block(node: _Written, indent: int) -> list[str]:
    """The lines of a non-empty list or mapping in block style."""
    lines: list[str] = []
    for key, child in node.items:
        head = " " * indent + ("- " if key is None else f"{key}: ")
        if child.kind in ("list", "map") and child.items:
            lines.append(head.rstrip() + (f" &{child.anchor}" if child.anchor else ""))
            lines.extend(_block(child, indent + 2))
        else:
            lines.append(head + _flow(child))
    return lines


@st.composite
def documents(draw: st.DrawFn, keys: tuple[str, ...] = KEYS, values: tuple[Any, ...] = ()) -> Model:
    """A YAML document written from a generated tree, in flow or block style, and its model."""
    tree = draw(trees(keys, values))
    writer = _Writer()
    written, data, nodes, _ = writer.node(tree, 0)
    model = writer.model
    model.data, model.nodes = data, nodes
    if draw(st.booleans()) and written.kind in ("list", "map") and written.items:
        head = f"--- &{written.anchor}\n" if written.anchor else ""
        model.text = head + "\n".join(_block(written, 0)) + "\n"
    else:
        model.text = _flow(written) + "\n"
    return model
