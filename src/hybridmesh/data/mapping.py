"""How one legacy table's rows become rows of a new service's table, and back.

A :class:`TableMapping` renames, drops and transforms columns and adds computed ones. The
replicator maps every backfilled row and every captured change with it; reconciliation maps
the source's rows the same way before comparing them with the target's; reverse replication
(writes that the new owner takes, carried back to the legacy database while legacy reports
still read it) uses :meth:`TableMapping.unmap_row`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Row = Mapping[str, Any]
#: A column's value in, the new value out.
Transform = Callable[[Any], Any]
#: A whole source row in (legacy column names), a computed column's value out.
Compute = Callable[[Row], Any]


@dataclass(frozen=True)
class TableMapping:
    """One source table's mapping onto one target table.

    ``key`` names the source's key columns; they keep their values (a key may be renamed,
    not transformed), so a row is found by the same key on both sides. ``rename`` maps source
    columns to target names, ``drop`` lists source columns the target does not keep,
    ``transform`` changes a source column's value on the way (keyed by the source name) and
    ``reverse_transform`` undoes it on the way back (keyed by the target name); ``computed``
    fills target columns from the whole source row.
    """

    source: str
    target: str
    key: tuple[str, ...]
    rename: Mapping[str, str] = field(default_factory=dict)
    drop: frozenset[str] = frozenset()
    transform: Mapping[str, Transform] = field(default_factory=dict)
    reverse_transform: Mapping[str, Transform] = field(default_factory=dict)
    computed: Mapping[str, Compute] = field(default_factory=dict)

    @property
    def plain(self) -> bool:
        """Whether the mapping only renames and drops columns, so both sides can be compared
        in SQL without Python in between."""
        return not self.transform and not self.computed

    @property
    def target_key(self) -> tuple[str, ...]:
        """The key columns as the target names them."""
        return tuple(self.target_name(column) for column in self.key)

    def target_name(self, column: str) -> str:
        return self.rename.get(column, column)

    def source_name(self, column: str) -> str | None:
        """The source column a target column comes from; None for a computed one."""
        for source, target in self.rename.items():
            if target == column:
                return source
        if column in self.computed or column in self.rename:
            return None
        return column

    def target_columns(self, source_columns: Sequence[str]) -> list[str]:
        """The target's columns, in order, for a source table with ``source_columns``."""
        mapped = [self.target_name(c) for c in source_columns if c not in self.drop]
        return mapped + [c for c in self.computed if c not in mapped]

    def map_row(self, row: Row) -> dict[str, Any]:
        """``row`` (source names) as the target stores it."""
        out: dict[str, Any] = {}
        for column, value in row.items():
            if column in self.drop:
                continue
            transform = self.transform.get(column)
            out[self.target_name(column)] = value if transform is None else transform(value)
        for column, compute in self.computed.items():
            out[column] = compute(row)
        return out

    def map_key(self, key: Row) -> dict[str, Any]:
        """A source key (source names) with the target's names."""
        return {self.target_name(column): key[column] for column in self.key}

    def unmap_row(self, row: Row) -> dict[str, Any]:
        """A target row as the source stores it: computed columns are left out, and a
        transformed column only comes back through its ``reverse_transform``."""
        out: dict[str, Any] = {}
        for column, value in row.items():
            source = self.source_name(column)
            if source is None or source in self.drop:
                continue
            if source in self.transform:
                reverse = self.reverse_transform.get(column)
                if reverse is None:
                    continue
                value = reverse(value)
            out[source] = value
        return out

    def unmap_key(self, key: Row) -> dict[str, Any]:
        """A target key (target names) with the source's names."""
        return {column: key[self.target_name(column)] for column in self.key}


__all__ = ["Compute", "Row", "TableMapping", "Transform"]
