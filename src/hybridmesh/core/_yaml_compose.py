"""Composing YAML documents from a parser's events, within limits and without recursion.

:mod:`hybridmesh.core.yaml_source` reads files; this is its engine. The parser is libyaml's
when PyYAML has it, else PyYAML's own (made to refuse what libyaml refuses). A loop with a
stack of its own builds the nodes, counting them (an alias counts every node it repeats),
checking depth (an alias nests what it repeats where it is written), key and scalar
lengths, keys given twice and aliases inside what they name, and recording the line of
every key and item as it goes. PyYAML's safe constructor then builds the data, each node
once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver
from yaml.scanner import ScannerError

from hybridmesh.core.yaml_lines import Lines

_CParser: type[Any] | None
try:  # libyaml's parser, when PyYAML was built with it: several times faster
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML's wheels ship libyaml
    _CParser = None


class Limits(Protocol):
    """The limits composing checks, those of :class:`~hybridmesh.core.yaml_source.YamlLimits`."""

    @property
    def max_nodes(self) -> int: ...

    @property
    def max_total_nodes(self) -> int: ...

    @property
    def max_depth(self) -> int: ...

    @property
    def max_key_chars(self) -> int: ...

    @property
    def max_scalar_chars(self) -> int: ...


@dataclass
class Tally:
    """What the texts of one load have cost so far: ``nodes`` as the limits count them (an
    alias for every node it repeats) and ``events``, the parser's events handled."""

    nodes: int = 0
    events: int = 0


class Refused(Exception):
    """Composition stopped: ``message`` at the 1-based ``line``."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Events(Protocol):
    def get_event(self) -> Event | None: ...

    def dispose(self) -> None: ...


class _PythonParser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's own parser, where libyaml is missing, made to refuse what libyaml refuses:
    an escape of a surrogate (``"\\ud800"``) or past U+10FFFF, which is not a character."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)

    def get_event(self) -> Event:
        try:
            event: Event = super().get_event()  # type: ignore[no-untyped-call]
        except ValueError as error:  # chr() of an escape past U+10FFFF
            raise ScannerError(
                "while scanning a quoted scalar",
                None,
                f"found an invalid escape: {error}",
                self.get_mark(),
            ) from None
        if isinstance(event, ScalarEvent) and _SURROGATE.search(event.value):
            mark: Any = event.start_mark
            raise ScannerError(
                "while scanning a quoted scalar",
                None,
                "found an escape of a surrogate, which is not a character",
                mark,
            )
        return event


_SURROGATE = re.compile("[\ud800-\udfff]")


def _parser(text: str) -> _Events:
    if _CParser is not None:
        parser: _Events = _CParser(text)
        return parser
    return _PythonParser(text)


class _Constructor(SafeConstructor):
    """PyYAML's safe constructor, whose errors all carry the line of their node: a value
    that a tag's converter refuses (``2020-13-45`` as a date, an integer of 5,000 digits)
    raises ``ValueError`` and the like, not a YAML error."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError, AttributeError) as error:
            raise ConstructorError(
                None,
                None,
                f"cannot read this {_tag_name(node.tag)} value: {error}",
                node.start_mark,
            ) from None


def _tag_name(tag: str) -> str:
    return tag.removeprefix("tag:yaml.org,2002:")


_RESOLVER = Resolver()
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"


@dataclass(frozen=True, slots=True)
class _Anchor:
    """A node with an anchor: ``size`` nodes (None while it is being composed) nested
    ``height`` lists or mappings deep."""

    node: Node
    size: int | None
    height: int


class _Frame:
    """A list or mapping being composed."""

    __slots__ = (
        "anchor",
        "height",
        "key",
        "key_lines",
        "lines",
        "merged",
        "node",
        "seen",
        "size",
    )

    def __init__(self, node: Node, lines: Lines, anchor: str | None, merged: bool) -> None:
        self.node = node
        self.lines = lines
        self.anchor = anchor
        self.merged = merged  # the value of a merge key
        self.size = 1  # nodes it stands for, itself included
        self.height = 1  # lists and mappings nested in it, itself included
        self.key: Node | None = None  # a mapping's key waiting for its value
        self.key_lines: Lines | None = None
        self.seen: dict[Any, int] = {}  # a mapping's keys, as values, with their lines

    def holds(self, size: int, height: int) -> None:
        """Count a key, an item or a value of ``size`` nodes, ``height`` levels deep."""
        self.size += size
        self.height = max(self.height, height + 1)


class Composer:
    """Composes the documents of one text from the parser's events, within the limits."""

    def __init__(self, text: str, limits: Limits, tally: Tally) -> None:
        self.limits = limits
        self.tally = tally
        self.events = _parser(text)
        self.constructor = _Constructor()
        self.nodes = 0  # in this text
        self.total_exceeded = False

    def dispose(self) -> None:
        self.events.dispose()

    def documents(self) -> list[tuple[Any, Lines]]:
        """The data and the lines of each document of the text."""
        documents: list[tuple[Any, Lines]] = []
        events = self.events
        while True:
            event = events.get_event()
            self.tally.events += 1
            if isinstance(event, StreamStartEvent):
                continue
            if isinstance(event, StreamEndEvent):
                return documents
            if not isinstance(event, DocumentStartEvent):  # pragma: no cover - parser's order
                raise Refused("invalid YAML: a document was expected", _line(event))
            node, lines = self._document()
            events.get_event()  # its DocumentEndEvent
            self.tally.events += 1
            documents.append((self.constructor.construct_document(node), lines))

    def _count(self, size: int, event: Event) -> None:
        """Count ``size`` more nodes, refusing past the limits."""
        limits = self.limits
        self.nodes += size
        self.tally.nodes += size
        if self.nodes > limits.max_nodes:
            raise Refused(
                f"more than {limits.max_nodes} nodes, counting each alias as every node it "
                "repeats: refused",
                _line(event),
            )
        if self.tally.nodes > limits.max_total_nodes:
            self.total_exceeded = True
            raise Refused(
                f"the files read hold more than {limits.max_total_nodes} nodes in all, counting "
                "each alias as every node it repeats: refused",
                _line(event),
            )

    def _document(self) -> tuple[Node, Lines]:
        """The root node of the next document and its lines."""
        anchors: dict[str, _Anchor] = {}
        stack: list[_Frame] = []
        root: tuple[Node, Lines] | None = None
        while root is None:
            event = self.events.get_event()
            self.tally.events += 1
            parent = stack[-1] if stack else None
            if isinstance(event, (SequenceEndEvent, MappingEndEvent)):
                done = stack.pop()
                if isinstance(done.node, MappingNode):
                    # Merge keys now, while whatever they merge is already merged itself,
                    # so PyYAML's merging never recurses through a chain of them.
                    self.constructor.flatten_mapping(done.node)
                if done.anchor is not None:
                    anchors[done.anchor] = _Anchor(done.node, done.size, done.height)
                if stack:
                    height = _merged(done.node, done.height) if done.merged else done.height
                    stack[-1].holds(done.size, height)
                else:
                    root = done.node, done.lines
                continue
            assert isinstance(event, NodeEvent)
            is_key = False
            merging = False  # the value of a merge key: what it holds joins the mapping
            if parent is not None and isinstance(parent.node, MappingNode):
                is_key = parent.key is None
                merging = parent.key is not None and parent.key.tag == _MERGE
            if isinstance(event, AliasEvent):
                node, size, height = self._alias(event, anchors)
                if merging:
                    height = _merged(node, height)
                self._check_depth(len(stack) + height, event)  # as deep as it repeats
                self._count(size, event)
            else:
                anchor = event.anchor
                if anchor is not None and anchor in anchors:
                    raise Refused(f"the anchor &{anchor} is defined twice", _line(event))
                size, height = 1, 0
                self._count(1, event)
                if isinstance(event, ScalarEvent):
                    node = self._scalar(event, is_key)
                    if anchor is not None:
                        anchors[anchor] = _Anchor(node, 1, 0)
                else:
                    assert isinstance(event, CollectionStartEvent)
                    if is_key:
                        raise Refused("a mapping key must be a scalar", _line(event))
                    self._check_depth(len(stack) + 1, event)
                    node = self._collection(event)
                    if anchor is not None:
                        anchors[anchor] = _Anchor(node, None, 0)  # open: no alias may use it
            if is_key:
                assert parent is not None
                self._key(parent, node, event)
                parent.holds(size, height)
                continue
            lines = self._place(parent, node, event)
            if isinstance(node, ScalarNode) or isinstance(event, AliasEvent):
                if parent is None:
                    root = node, lines
                else:
                    parent.holds(size, height)
            else:
                stack.append(_Frame(node, lines, event.anchor, merging))
        return root

    def _check_depth(self, depth: int, event: Event) -> None:
        if depth > self.limits.max_depth:
            raise Refused(
                f"nested deeper than {self.limits.max_depth} levels: refused", _line(event)
            )

    def _alias(self, event: AliasEvent, anchors: dict[str, _Anchor]) -> tuple[Node, int, int]:
        """The node an alias names, its size and its height."""
        anchor = event.anchor
        found = anchors.get(anchor) if anchor is not None else None
        if found is None:
            raise Refused(f"the alias *{anchor} names no anchor before it", _line(event))
        if found.size is None:
            raise Refused(f"the alias *{anchor} is inside the value it names", _line(event))
        return found.node, found.size, found.height

    def _scalar(self, event: ScalarEvent, is_key: bool) -> ScalarNode:
        value = event.value
        most = self.limits.max_key_chars if is_key else self.limits.max_scalar_chars
        if len(value) > most:
            what = "key" if is_key else "value"
            raise Refused(
                f"a {what} of {len(value)} characters, more than the limit of {most}: refused",
                _line(event),
            )
        tag = event.tag
        if tag is None or tag == "!":
            tag = _RESOLVER.resolve(ScalarNode, value, event.implicit)  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        return ScalarNode(tag, value, mark, mark, style=event.style)

    def _collection(self, event: CollectionStartEvent) -> Node:
        kind = SequenceNode if isinstance(event, SequenceStartEvent) else MappingNode
        tag = event.tag
        if tag is None or tag == "!":
            tag = _RESOLVER.resolve(kind, None, event.implicit)  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        return kind(tag, [], mark, mark, flow_style=event.flow_style)

    def _key(self, frame: _Frame, node: Node, event: Event) -> None:
        """``node`` is the next key of the mapping ``frame``: refuse it if given before."""
        if not isinstance(node, ScalarNode):
            raise Refused("a mapping key must be a scalar", _line(event))
        if len(node.value) > self.limits.max_key_chars:
            raise Refused(
                f"a key of {len(node.value)} characters, more than the limit of "
                f"{self.limits.max_key_chars}: refused",
                _line(event),
            )
        line = _line(event)
        if node.tag == _STR:
            value: Any = node.value  # what the constructor would make of it, sooner
        elif node.tag == _MERGE:
            value = "<<"
        elif node.tag == _VALUE:
            value = "="
        else:
            value = self.constructor.construct_object(node, deep=True)
        first = frame.seen.get(value)
        if first is not None:
            raise Refused(
                f"the key {_shown(node.value)} is given twice in one mapping, at lines {first} "
                f"and {line}",
                line,
            )
        frame.seen[value] = line
        frame.key = node
        frame.key_lines = frame.lines.add(str(node.value), line)

    def _place(self, frame: _Frame | None, node: Node, event: Event) -> Lines:
        """Put ``node`` in ``frame`` (a list's next item, or the value of a mapping's waiting
        key) and answer the lines of where it goes."""
        if frame is None:
            return Lines(_line(event))
        parent = frame.node
        if isinstance(parent, SequenceNode):
            lines = frame.lines.add(len(parent.value), _line(event))
            parent.value.append(node)
            return lines
        assert frame.key is not None and frame.key_lines is not None
        parent.value.append((frame.key, node))
        lines = frame.key_lines
        frame.key = frame.key_lines = None
        return lines


def _merged(node: Node, height: int) -> int:
    """The height that merging ``node`` adds to a mapping: what a merged mapping holds joins
    the mapping, one level up (two, for a list of mappings)."""
    if isinstance(node, MappingNode):
        return max(height - 1, 0)
    if isinstance(node, SequenceNode):
        return max(height - 2, 0)
    return height


def _line(event: Event | None) -> int:
    mark = event.start_mark if event is not None else None
    return mark.line + 1 if mark is not None else 1


def _shown(key: str) -> str:
    """A key as an error message shows it: quoted, on one line, at most 60 characters."""
    text = repr(key)
    return text if len(text) <= 60 else text[:56] + "...'"


__all__ = ["Composer", "Limits", "Refused", "Tally"]
