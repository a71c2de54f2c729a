"""Where each key and item of a YAML document is written: a tree of lines.

A location is the path to a key or an item inside a document (``("steps", 1, "timeout")``);
:class:`Lines` answers with the line of the nearest enclosing location that it has.
"""

from __future__ import annotations

from collections.abc import Callable

#: Where a value sits inside a document: keys and list indexes, outermost first.
Location = tuple[str | int, ...]


class Lines:
    """Where a value is written: its line, and the :class:`Lines` of the keys and items
    inside it, by key (as written) or by list index.

    The line of a mapping's value is the line of its key; the line of a list item is the
    line it starts on. A tree rather than a flat table of locations: it costs one object
    per node, whatever the depth, and the lines of one entry are found without scanning
    those of the others.
    """

    __slots__ = ("_children", "_spelled", "line")

    def __init__(self, line: int) -> None:
        self.line = line
        self._children: dict[str | int, Lines] | None = None
        self._spelled: tuple[Callable[[str], str], dict[str | int, str | int]] | None = None

    def add(self, part: str | int, line: int) -> Lines:
        """The lines of the key or item ``part``, new at ``line`` unless already known (as
        a document is composed)."""
        if self._children is None:
            self._children = {}
        child = self._children.get(part)
        if child is None:
            child = self._children[part] = Lines(line)
        return child

    def children(self) -> list[tuple[str | int, Lines]]:
        """The keys (as written) and indexes inside with their lines, in the file's order."""
        return list((self._children or {}).items())

    def child(
        self, part: str | int, spelling: Callable[[str], str] | None = None
    ) -> tuple[str | int, Lines] | None:
        """The key or item ``part`` and its lines, or None.

        With ``spelling``, the first key in the file written as ``part`` or whose
        ``spelling(key)`` is ``part`` matches too (``retryPolicy`` for ``retry_policy``).
        """
        children = self._children
        if not children:
            return None
        found = children.get(part)
        if found is not None:
            return part, found
        if spelling is None:
            return None
        if self._spelled is None or self._spelled[0] is not spelling:
            index: dict[str | int, str | int] = {}
            for key in children:
                if isinstance(key, str):
                    index.setdefault(spelling(key), key)
                index.setdefault(key, key)
            self._spelled = (spelling, index)
        written = self._spelled[1].get(part)
        return None if written is None else (written, children[written])

    def follow(
        self, loc: Location, spelling: Callable[[str], str] | None = None
    ) -> list[tuple[str | int, Lines]]:
        """The parts of ``loc`` found, outermost first, each as written with its lines; it
        stops at the first part that is not there."""
        found: list[tuple[str | int, Lines]] = []
        here = self
        for part in loc:
            step = here.child(part, spelling)
            if step is None:
                break
            found.append(step)
            here = step[1]
        return found

    def under(self, loc: Location) -> Lines | None:
        """The lines of the value at ``loc`` exactly, or None."""
        found = self.follow(loc)
        if len(found) != len(loc):
            return None
        return found[-1][1] if found else self

    def line_of(self, loc: Location, spelling: Callable[[str], str] | None = None) -> int:
        """The line of ``loc``, else of the nearest location that encloses it."""
        found = self.follow(loc, spelling)
        return found[-1][1].line if found else self.line

    def locations(self) -> dict[Location, int]:
        """Every location inside, from here, with its line (for tests and debugging)."""
        flat: dict[Location, int] = {}
        pending: list[tuple[Location, Lines]] = [((), self)]
        while pending:
            loc, lines = pending.pop()
            flat[loc] = lines.line
            inside = lines.children()
            pending.extend(((*loc, part), child) for part, child in reversed(inside))
        return flat


__all__ = ["Lines", "Location"]
