"""YAML files as the loaders read them: the data of each document and the line of every key,
read within limits.

The service registry and the saga/workflow loaders both report errors at ``file:line`` and
field, and both read files that anyone may have written; this module is what they share, so
each rule below holds for both, and for any later reader:

- **Limits** (:class:`YamlLimits`) are checked before the work they bound: the sizes of a
  folder's files and their number before any file is read, a file's size before it is
  read, a collection's depth before it is composed, a node count as nodes are composed
  (an alias counts every node it repeats, each time it is used), a key's or a text's
  length as it is read. An alias bomb, a deeply nested document or an oversized file is
  refused at its file and line after work in proportion to what came before the limit.
- **Encoding.** A file is UTF-8, with or without a byte order mark, and holds no control
  characters other than tab and line breaks.
- **Keys.** A key given twice in one mapping is refused, naming both lines: a loader would
  otherwise keep one of them and silently drop the other. Keys are compared as values, so
  ``1`` and ``0x1`` are the same key, as they would be in the loaded mapping. A key is a
  scalar; an alias may not appear inside the value it names.
- **No recursion.** Documents are composed from the parser's events by a loop with its own
  stack, so depth costs no Python frames, and the line of every key is recorded as it is
  read: an alias's line is where the alias is written, and what it repeats is not walked
  again. PyYAML's safe constructor then builds the data, each node once.

A location is the path to a key or an item inside a document (``("steps", 1, "timeout")``);
:class:`Lines` answers with the line of the nearest enclosing location that it has.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
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

from hybridmesh.core.errors import Problem, ValidationError

_CParser: type[Any] | None
try:  # libyaml's parser, when PyYAML was built with it: several times faster
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML's wheels ship libyaml
    _CParser = None

#: Where a value sits inside a document: keys and list indexes, outermost first.
Location = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlLimits:
    """How much YAML one load may read; past any limit the input is refused (exit 2).

    The defaults leave real inputs far behind: a registry service is about 1.3 KB and 120
    nodes, so one file holds some 8,000 services and a folder some 16,000. Attacks end early:
    an alias bomb once it stands for more nodes than ``max_nodes``, nesting at
    ``max_depth``, an oversized file or folder before a byte of it is parsed.
    """

    #: Bytes in one file, checked before it is read.
    max_file_bytes: int = 16 * 1024 * 1024
    #: Bytes in all the files of one load (a folder), checked before any is read.
    max_total_bytes: int = 64 * 1024 * 1024
    #: YAML files in one load.
    max_files: int = 20_000
    #: Nodes (scalars, lists, mappings) in one file, an alias counting every node it
    #: repeats each time it is used.
    max_nodes: int = 1_000_000
    #: Nodes in all the files of one load, counted the same way.
    max_total_nodes: int = 2_000_000
    #: Lists and mappings nested inside one another.
    max_depth: int = 64
    #: Characters in one mapping key.
    max_key_chars: int = 1_024
    #: Characters in one scalar value (text, number, ...).
    max_scalar_chars: int = 65_536


DEFAULT_LIMITS = YamlLimits()


# ------------------------------------------------------------------------------ lines


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

    def _add(self, part: str | int, line: int) -> Lines:
        """The lines of the key or item ``part``, new at ``line`` unless already known."""
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


@dataclass(frozen=True)
class YamlDocument:
    """One document of a YAML file: its data and the lines of its keys and items."""

    data: Any
    lines: Lines


# ---------------------------------------------------------------------------- reading


class _TotalExceeded(ValidationError):
    """A total of the load is exceeded: no later file can be read either."""


class _Refused(Exception):
    """Composition stopped: ``message`` at the 1-based ``line``."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class YamlReader:
    """Reads the YAML files of one load within :class:`YamlLimits`, totals included.

    The counters say what it has read so far: ``files``, ``bytes``, ``nodes`` (as the limits
    count them, an alias for every node it repeats) and ``events``, the parser's events it
    handled, which measure its work: at most a few for each character of input.
    """

    def __init__(self, limits: YamlLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.files = 0
        self.bytes = 0
        self.nodes = 0
        self.events = 0

    # -- a path

    def documents(
        self, root: Path, problems: list[Problem]
    ) -> Iterator[tuple[Path, list[YamlDocument]]]:
        """Each YAML file under ``root`` (the file itself, or a folder's ``*.yaml`` and
        ``*.yml`` files, recursively, in name order) with its documents.

        A file that cannot be read adds its problem to ``problems`` and the others are
        still read; a missing path, a folder without YAML files, and a total limit
        exceeded add one problem and end the load.
        """
        try:
            paths = self.paths(root)
        except ValidationError as refused:
            problems.extend(refused.problems)
            return
        for path in paths:
            try:
                documents = self.read(path)
            except _TotalExceeded as exceeded:
                problems.extend(exceeded.problems)
                return
            except ValidationError as unreadable:
                problems.extend(unreadable.problems)
                continue
            yield path, documents

    def paths(self, root: Path) -> list[Path]:
        """The YAML files of ``root``, checked against the totals before any is read."""
        name = str(root)
        limits = self.limits
        try:
            info = root.stat()
        except FileNotFoundError:
            raise ValidationError([Problem("no such file or folder", name)]) from None
        except OSError as error:
            raise ValidationError([Problem(f"cannot read: {_reason(error)}", name)]) from None
        if not stat.S_ISDIR(info.st_mode):
            return [root]
        found, total = _walk(root, limits.max_files)
        if not found:
            raise ValidationError([Problem("no *.yaml or *.yml files found", name)])
        if len(found) > limits.max_files:
            raise ValidationError(
                [Problem(f"more than {limits.max_files} YAML files: refused", name)]
            )
        if total > limits.max_total_bytes:
            raise ValidationError(
                [
                    Problem(
                        f"its YAML files hold {total} bytes, more than the limit of "
                        f"{limits.max_total_bytes} in all: refused",
                        name,
                    )
                ]
            )
        return found

    # -- a file

    def read(self, path: Path) -> list[YamlDocument]:
        """Every document of the YAML file ``path``.

        Raises :class:`~hybridmesh.core.errors.ValidationError` with one problem at the
        file (and the line, where there is one) when the file cannot be read, is too large,
        is not UTF-8 or is not valid YAML.
        """
        return self.parse(self.read_bytes(path), str(path))

    def read_bytes(self, path: Path) -> bytes:
        """The content of the file ``path``, counted against the limits, unparsed (for a
        reader of another format, such as JSON, that must be as bounded)."""
        file = str(path)
        limits = self.limits
        self.files += 1
        if self.files > limits.max_files:
            raise _TotalExceeded([Problem(f"more than {limits.max_files} YAML files", file)])
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO would block, a device never end
                raise ValidationError([Problem("not a regular file", file)])
            if info.st_size > limits.max_file_bytes:
                raise ValidationError([_too_big(file, info.st_size, limits.max_file_bytes)])
            with path.open("rb") as stream:
                data = stream.read(limits.max_file_bytes + 1)
        except OSError as error:
            raise ValidationError([Problem(f"cannot read: {_reason(error)}", file)]) from None
        if len(data) > limits.max_file_bytes:  # it grew since
            raise ValidationError([_too_big(file, len(data), limits.max_file_bytes)])
        self.bytes += len(data)
        if self.bytes > limits.max_total_bytes:
            raise _TotalExceeded(
                [
                    Problem(
                        f"the files read hold more than {limits.max_total_bytes} bytes in all",
                        file,
                    )
                ]
            )
        return data

    def parse(self, data: bytes | str, file: str) -> list[YamlDocument]:
        """Every document of ``data``, the content of ``file``."""
        limits = self.limits
        if isinstance(data, bytes):
            if len(data) > limits.max_file_bytes:
                raise ValidationError([_too_big(file, len(data), limits.max_file_bytes)])
            text = _decode(data, file)
        else:
            if len(data) > limits.max_file_bytes:
                raise ValidationError([_too_big(file, len(data), limits.max_file_bytes)])
            text = data.removeprefix("\ufeff")
        _check_characters(text, file)
        composer = _Composer(text, self)
        try:
            return composer.documents()
        except _Refused as refused:
            problem = Problem(refused.message, file, refused.line)
            if composer.total_exceeded:
                raise _TotalExceeded([problem]) from None
            raise ValidationError([problem]) from None
        except yaml.YAMLError as error:
            raise ValidationError([_yaml_problem(error, file, limits)]) from None
        finally:
            composer.dispose()


def read_yaml(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> list[YamlDocument]:
    """Every document of the YAML file ``path``, read within ``limits``; see
    :meth:`YamlReader.read`."""
    return YamlReader(limits).read(path)


def parse_yaml(
    data: bytes | str, file: str, limits: YamlLimits = DEFAULT_LIMITS
) -> list[YamlDocument]:
    """Every document of ``data`` (what ``file`` holds), read within ``limits``."""
    return YamlReader(limits).parse(data, file)


def yaml_files(path: Path, limits: YamlLimits = DEFAULT_LIMITS) -> list[Path]:
    """``path`` itself, or every ``*.yaml`` / ``*.yml`` file under the folder ``path``,
    recursively, in name order (at most one more than ``limits.max_files``)."""
    if path.is_dir():
        return _walk(path, limits.max_files)[0]
    return [path]


def _walk(root: Path, most: int) -> tuple[list[Path], int]:
    """The YAML files under the folder ``root`` in name order and their total size; it
    stops after ``most + 1`` files. Symbolic links to folders are not followed, and the
    walk keeps its own stack, so no folder tree is too deep for it."""
    found: list[Path] = []
    total = 0
    pending = [root]
    while pending and len(found) <= most:
        folder = pending.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif os.path.splitext(entry.name)[1] in _SUFFIXES and entry.is_file():
                        found.append(Path(entry.path))
                        total += entry.stat().st_size
                        if len(found) > most:
                            break
        except OSError as error:
            raise ValidationError(
                [Problem(f"cannot read the folder: {_reason(error)}", str(folder))]
            ) from None
    return sorted(found), total


_SUFFIXES = (".yaml", ".yml")


def _too_big(file: str, size: int, limit: int) -> Problem:
    return Problem(f"the file is {size} bytes, more than the limit of {limit}: refused", file)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


# --------------------------------------------------------------------------- decoding

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
#: What YAML does not allow in a stream: control characters other than tab, line feed,
#: carriage return and next line, surrogates, and U+FFFE / U+FFFF.
_NOT_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _decode(data: bytes, file: str) -> str:
    """``data`` as text: UTF-8, with or without a byte order mark."""
    if data.startswith(_UTF16_BOMS):
        raise ValidationError([Problem("not UTF-8: the file is UTF-16; save it as UTF-8", file, 1)])
    try:
        return data.removeprefix(_UTF8_BOM).decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + (len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0)
        line = data.count(b"\n", 0, offset) + 1
        raise ValidationError(
            [
                Problem(
                    f"not UTF-8: byte 0x{data[offset]:02x} at offset {offset} is not valid "
                    "UTF-8; save the file as UTF-8",
                    file,
                    line,
                )
            ]
        ) from None


def _check_characters(text: str, file: str) -> None:
    """Refuse the characters YAML does not allow, naming the first one and its line."""
    found = _NOT_PRINTABLE.search(text)
    if found is None:
        return
    at = found.start()
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    raise ValidationError(
        [
            Problem(
                f"control character U+{ord(found.group()):04X} at column {column} is not "
                "allowed in YAML",
                file,
                line,
            )
        ]
    )


def _yaml_problem(error: yaml.YAMLError, file: str, limits: YamlLimits) -> Problem:
    """A parser's or constructor's error as one line at its file and line."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    reason = getattr(error, "problem", None) or getattr(error, "context", None) or str(error)
    if "nesting depth" in reason:
        # libyaml stops at a depth of its own, far beyond ours: this input is deeper.
        return Problem(f"nested deeper than {limits.max_depth} levels: refused", file, line)
    return Problem("invalid YAML: " + " ".join(reason.split()), file, line)


# -------------------------------------------------------------------------- composing


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
    return _PythonParser(text)  # pragma: no cover


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


class _Composer:
    """Composes the documents of one text from the parser's events, within the limits."""

    def __init__(self, text: str, reader: YamlReader) -> None:
        self.reader = reader
        self.limits = reader.limits
        self.events = _parser(text)
        self.constructor = _Constructor()
        self.nodes = 0  # in this text
        self.total_exceeded = False

    def dispose(self) -> None:
        self.events.dispose()

    def documents(self) -> list[YamlDocument]:
        documents: list[YamlDocument] = []
        events = self.events
        while True:
            event = events.get_event()
            self.reader.events += 1
            if isinstance(event, StreamStartEvent):
                continue
            if isinstance(event, StreamEndEvent):
                return documents
            if not isinstance(event, DocumentStartEvent):  # pragma: no cover - parser's order
                raise _Refused("invalid YAML: a document was expected", _line(event))
            node, lines = self._document()
            events.get_event()  # its DocumentEndEvent
            self.reader.events += 1
            documents.append(YamlDocument(self.constructor.construct_document(node), lines))

    def _count(self, size: int, event: Event) -> None:
        """Count ``size`` more nodes, refusing past the limits."""
        limits = self.limits
        self.nodes += size
        self.reader.nodes += size
        if self.nodes > limits.max_nodes:
            raise _Refused(
                f"more than {limits.max_nodes} nodes, counting each alias as every node it "
                "repeats: refused",
                _line(event),
            )
        if self.reader.nodes > limits.max_total_nodes:
            self.total_exceeded = True
            raise _Refused(
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
            self.reader.events += 1
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
                    raise _Refused(f"the anchor &{anchor} is defined twice", _line(event))
                size, height = 1, 0
                self._count(1, event)
                if isinstance(event, ScalarEvent):
                    node = self._scalar(event, is_key)
                    if anchor is not None:
                        anchors[anchor] = _Anchor(node, 1, 0)
                else:
                    assert isinstance(event, CollectionStartEvent)
                    if is_key:
                        raise _Refused("a mapping key must be a scalar", _line(event))
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
            raise _Refused(
                f"nested deeper than {self.limits.max_depth} levels: refused", _line(event)
            )

    def _alias(self, event: AliasEvent, anchors: dict[str, _Anchor]) -> tuple[Node, int, int]:
        """The node an alias names, its size and its height."""
        anchor = event.anchor
        found = anchors.get(anchor) if anchor is not None else None
        if found is None:
            raise _Refused(f"the alias *{anchor} names no anchor before it", _line(event))
        if found.size is None:
            raise _Refused(f"the alias *{anchor} is inside the value it names", _line(event))
        return found.node, found.size, found.height

    def _scalar(self, event: ScalarEvent, is_key: bool) -> ScalarNode:
        value = event.value
        most = self.limits.max_key_chars if is_key else self.limits.max_scalar_chars
        if len(value) > most:
            what = "key" if is_key else "value"
            raise _Refused(
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
            raise _Refused("a mapping key must be a scalar", _line(event))
        if len(node.value) > self.limits.max_key_chars:
            raise _Refused(
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
            raise _Refused(
                f"the key {_shown(node.value)} is given twice in one mapping, at lines {first} "
                f"and {line}",
                line,
            )
        frame.seen[value] = line
        frame.key = node
        frame.key_lines = frame.lines._add(str(node.value), line)

    def _place(self, frame: _Frame | None, node: Node, event: Event) -> Lines:
        """Put ``node`` in ``frame`` (a list's next item, or the value of a mapping's waiting
        key) and answer the lines of where it goes."""
        if frame is None:
            return Lines(_line(event))
        parent = frame.node
        if isinstance(parent, SequenceNode):
            lines = frame.lines._add(len(parent.value), _line(event))
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


__all__ = [
    "DEFAULT_LIMITS",
    "Lines",
    "Location",
    "YamlDocument",
    "YamlLimits",
    "YamlReader",
    "parse_yaml",
    "read_yaml",
    "yaml_files",
]
