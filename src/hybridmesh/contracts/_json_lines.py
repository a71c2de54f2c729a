"""Where each key and item of a JSON document is written, as :class:`Lines`.

The standard library's JSON reader gives values, not positions; a contract file that is
wrong must still be reported at its line. This scanner walks the text once, after it has
parsed, and records the line of every key and list item in the same tree of lines the YAML
loaders use, so a problem found in the parsed value is located by its path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from hybridmesh.core.yaml_lines import Lines

# A string (escapes included), a punctuation mark, or a bare scalar (number, true, null).
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


@dataclass
class _Open:
    """A mapping or list being read: its lines and where the next value goes."""

    lines: Lines
    is_mapping: bool
    key: str = ""
    key_line: int = 1
    expect_key: bool = True
    index: int = 0


def json_lines(text: str) -> Lines:
    """The lines of ``text``, a document that :func:`json.loads` accepts.

    A loop with its own stack, not recursion: depth costs no Python frames.
    """
    root = Lines(1)
    stack: list[_Open] = []
    line, pos = 1, 0
    for token in _TOKEN.finditer(text):
        line += text.count("\n", pos, token.start())
        pos = token.start()
        value = token.group()
        if not stack:
            if value in ("{", "["):
                root.line = line
                stack.append(_Open(root, value == "{"))
            continue
        top = stack[-1]
        if value in ("}", "]"):
            stack.pop()
            continue
        if value == ":":
            continue
        if value == ",":
            if top.is_mapping:
                top.expect_key = True
            else:
                top.index += 1
            continue
        if top.is_mapping and top.expect_key:
            top.key, top.key_line, top.expect_key = json.loads(value), line, False
            continue
        part: str | int = top.key if top.is_mapping else top.index
        child = top.lines.add(part, top.key_line if top.is_mapping else line)
        if value in ("{", "["):
            stack.append(_Open(child, value == "{"))
    return root


__all__ = ["json_lines"]
