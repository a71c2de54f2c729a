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
  stack (:mod:`hybridmesh.core._yaml_compose`), so depth costs no Python frames, and the
  line of every key is recorded as it is read (:class:`~hybridmesh.core.yaml_lines.Lines`):
  an alias's line is where the alias is written, and what it repeats is not walked again.
  PyYAML's safe constructor then builds the data, each node once.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridmesh.core._yaml_compose import Composer, Refused, Tally
from hybridmesh.core.errors import Problem, ValidationError
from hybridmesh.core.yaml_lines import Lines, Location


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


@dataclass(frozen=True)
class YamlDocument:
    """One document of a YAML file: its data and the lines of its keys and items."""

    data: Any
    lines: Lines


# ---------------------------------------------------------------------------- reading


class _TotalExceeded(ValidationError):
    """A total of the load is exceeded: no later file can be read either."""


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
        self._tally = Tally()

    @property
    def nodes(self) -> int:
        return self._tally.nodes

    @property
    def events(self) -> int:
        return self._tally.events

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
        composer = Composer(text, self.limits, self._tally)
        try:
            return [YamlDocument(data, lines) for data, lines in composer.documents()]
        except Refused as refused:
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


def document_entries(
    data: Any, plural: str, identity: str
) -> Iterator[tuple[Any, tuple[str | int, ...]]]:
    """The items of one YAML document that holds one item, a list of them, or a mapping
    ``{plural: [...]}`` (told from a single item by its lack of the ``identity`` key), each
    with its location. A ``plural`` that is not a list comes back whole at ``(plural,)``,
    for the caller to report."""
    if data is None:
        return
    if isinstance(data, dict) and plural in data and identity not in data:
        items = data[plural]
        if not isinstance(items, list):
            yield items, (plural,)
            return
        for index, item in enumerate(items):
            yield item, (plural, index)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield item, (index,)
    else:
        yield data, ()


__all__ = [
    "DEFAULT_LIMITS",
    "Lines",
    "Location",
    "YamlDocument",
    "YamlLimits",
    "YamlReader",
    "document_entries",
    "parse_yaml",
    "read_yaml",
    "yaml_files",
]
