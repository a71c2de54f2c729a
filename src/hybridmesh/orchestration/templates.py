"""Payload templates: ``{{ input.user_id }}``, ``{{ context.create-user-account.id }}``.

A string that is one template and nothing else becomes the value it names, with its type (a
number stays a number, a mapping a mapping); a template inside a longer string is replaced
by the value's text. Names are dotted paths from a root: ``input`` (what the execution
started with), ``context`` (the workflow context: the input, each completed step's result
under its step id, and the ``context_updates`` steps returned), ``steps`` (each step's
``status`` and ``result``) or ``execution_id`` (a string, with nothing under it).

The syntax, checked when a definition is validated and again before anything is sent:

- a string without ``{{`` is text, sent as written (so ``}}`` in JSON text is fine);
- in a string with ``{{``, each ``{{`` is closed by ``}}`` around one path, and a ``}}``
  that closes nothing is an error; so are an empty ``{{ }}`` and an unclosed ``{{``;
- a path is a root and names joined by ``.``, each name letters, digits, ``_`` or ``-``
  (a list index is a name of digits); spaces may surround the path, not split it. Anything
  else (``{{ 1+1 }}``, ``{{ input['x'] }}``) is an error, never text.

The parser reads a string once, left to right, with bounded look-ahead: its time is linear
in the string's length, whatever the string. A path that leads nowhere at run time, or a
template that does not parse, raises :class:`TemplateError` (a
:class:`~hybridmesh.core.errors.ValidationError`): the step fails without retrying, and
nothing is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from hybridmesh.core.errors import ValidationError
from hybridmesh.core.serialization import dumps

#: The names a template's path may start with.
ROOTS = ("input", "context", "steps", "execution_id")

_OPEN, _CLOSE = "{{", "}}"
_NAME = re.compile(r"[\w-]+")
_MISSING = object()
#: How much of a template an error quotes.
_QUOTED = 60


class TemplateError(ValidationError):
    """A template that does not parse, or whose path names nothing."""


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``{{ path }}``: the names of its path, root first."""

    path: tuple[str, ...]

    @property
    def root(self) -> str:
        return self.path[0]

    def __str__(self) -> str:
        return ".".join(self.path)


#: A parsed string: its text and its references, in order.
Piece = str | Reference


def _quoted(text: str) -> str:
    return repr(text if len(text) <= _QUOTED else text[:_QUOTED] + "…")


def _fail(text: str, message: str) -> NoReturn:
    raise TemplateError(f"template {_quoted(text)}: {message}")


def parse(text: str) -> tuple[Piece, ...]:
    """The pieces of ``text``: literal text and references, in order. A string without
    ``{{`` is one piece of text. Raises :class:`TemplateError` for a string that breaks the
    syntax (see the module's docstring)."""
    if _OPEN not in text:
        return (text,)
    pieces: list[Piece] = []
    position = 0
    while True:
        start = text.find(_OPEN, position)
        stop = len(text) if start < 0 else start
        stray = text.find(_CLOSE, position, stop)
        if stray >= 0:
            _fail(text, f"'}}}}' at character {stray + 1} closes no '{{{{'")
        if stop > position:
            pieces.append(text[position:stop])
        if start < 0:
            return tuple(pieces)
        end = text.find(_CLOSE, start + 2)
        nested = text.find(_OPEN, start + 2, len(text) if end < 0 else end)
        if end < 0 or nested >= 0:
            _fail(text, f"'{{{{' at character {start + 1} is not closed by '}}}}'")
        pieces.append(_reference(text, text[start + 2 : end].strip()))
        position = end + 2


def _reference(text: str, inner: str) -> Reference:
    if not inner:
        _fail(text, "'{{ }}' names nothing; write a path such as input.order_id")
    path = tuple(inner.split("."))
    if not all(_NAME.fullmatch(name) for name in path):
        _fail(
            text,
            f"{_quoted(inner)} is not a path: a root and names joined by '.', each name "
            "letters, digits, '_' or '-'",
        )
    if path[0] not in ROOTS:
        _fail(text, f"unknown root {_quoted(path[0])}; a path starts with {', '.join(ROOTS)}")
    if path[0] == "execution_id" and len(path) > 1:
        _fail(text, "execution_id is a string: nothing is under it")
    return Reference(path)


def references(text: str) -> list[Reference]:
    """The references of ``text``, in order; raises :class:`TemplateError` as :func:`parse`."""
    return [piece for piece in parse(text) if isinstance(piece, Reference)]


def _whole(pieces: tuple[Piece, ...]) -> Reference | None:
    """The reference that is the whole string, spaces around it aside (None: none is)."""
    found = [piece for piece in pieces if isinstance(piece, Reference)]
    if len(found) != 1:
        return None
    if any(isinstance(piece, str) and piece.strip() for piece in pieces):
        return None
    return found[0]


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """``value`` with every template replaced; mappings and lists are rendered deeply.
    Raises :class:`TemplateError` for a template that does not parse or a path that names
    nothing."""
    if isinstance(value, str):
        return _render_string(value, scope)
    if isinstance(value, Mapping):
        return {key: render(item, scope) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, scope) for item in value]
    return value


Renderer = Callable[[Mapping[str, Any]], Any]

#: Compiled payloads by identity (plans are immutable and cached, so their payloads are
#: the same objects run after run); the value is kept so its id cannot be reused.
_COMPILED: dict[int, tuple[Any, Renderer | None]] = {}
_COMPILED_MAX = 4096


def compiled(value: Any) -> Renderer | None:
    """A function that renders ``value`` for a scope, as :func:`render` does, or None when
    ``value`` holds no template. Compiled once per payload object; a template that does not
    parse gives a function that raises its :class:`TemplateError`."""
    hit = _COMPILED.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    renderer = _compile(value) if has_templates(value) else None
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    _COMPILED[id(value)] = (value, renderer)
    return renderer


def _compile(value: Any) -> Renderer:
    if isinstance(value, str):
        if _OPEN not in value:
            return lambda scope: value
        try:
            pieces = parse(value)
        except TemplateError as error:
            return _raising(error)
        whole = _whole(pieces)
        if whole is not None:
            return _getter(whole.path)
        return lambda scope: _join(pieces, scope)
    if isinstance(value, Mapping):
        parts = [(key, _compile(item)) for key, item in value.items()]
        if len(parts) == 1:  # the common payload: one field from the input or context
            (key, part), *_ = parts
            return lambda scope: {key: part(scope)}
        return lambda scope: {key: part(scope) for key, part in parts}
    if isinstance(value, list | tuple):
        items = [_compile(item) for item in value]
        return lambda scope: [item(scope) for item in items]
    return lambda scope: value


def _raising(error: TemplateError) -> Renderer:
    def fail(scope: Mapping[str, Any]) -> Any:
        raise TemplateError(error.problems)

    return fail


def has_templates(value: Any) -> bool:
    """Whether ``value`` holds a template anywhere (rendering it would change it)."""
    if isinstance(value, str):
        return _OPEN in value
    if isinstance(value, Mapping):
        return any(has_templates(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_templates(item) for item in value)
    return False


def _render_string(text: str, scope: Mapping[str, Any]) -> Any:
    if _OPEN not in text:
        return text
    pieces = parse(text)
    whole = _whole(pieces)
    if whole is not None:
        return _walk(whole.path, scope)
    return _join(pieces, scope)


def _join(pieces: tuple[Piece, ...], scope: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            parts.append(piece)
        else:
            found = _walk(piece.path, scope)
            try:
                parts.append(found if isinstance(found, str) else _text(found))
            except (TypeError, ValueError) as error:  # not JSON, or an int too long for text
                raise TemplateError(
                    f"template {{{{ {piece} }}}}: its value cannot be written as text ({error})"
                ) from None
    return "".join(parts)


def _getter(path: tuple[str, ...]) -> Renderer:
    """:func:`_walk` of ``path``; plain dicts are walked without the ``Mapping``
    protocol's detour."""
    first, *rest = path

    def get(scope: Mapping[str, Any]) -> Any:
        current: Any = scope.get(first, _MISSING)
        for part in rest:
            if type(current) is not dict:
                break
            current = current.get(part, _MISSING)
        else:
            if current is not _MISSING:
                return current
        return _walk(path, scope)  # the general walk, and its error

    return get


def lookup(path: str, scope: Mapping[str, Any]) -> Any:
    """The value at dotted ``path`` in ``scope``; :class:`TemplateError` when there is
    none."""
    return _walk(tuple(path.split(".")), scope)


def _walk(path: tuple[str, ...], scope: Mapping[str, Any]) -> Any:
    current: Any = scope
    for depth, part in enumerate(path):
        found: Any = _MISSING
        if isinstance(current, Mapping):
            found = current.get(part, _MISSING)
        elif isinstance(current, list) and _index(part) < len(current):
            found = current[_index(part)]
        if found is _MISSING:
            walked = ".".join(path[: depth + 1])
            raise TemplateError(
                f"template {{{{ {'.'.join(path)} }}}}: nothing at {_quoted(walked)}"
            )
        current = found
    return current


def _index(name: str) -> int:
    """``name`` as a list index (a huge one for a name that is not one)."""
    if name.isdecimal() and len(name) <= 18:
        return int(name)
    return 2**63


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return dumps(value)


__all__ = [
    "ROOTS",
    "Piece",
    "Reference",
    "Renderer",
    "TemplateError",
    "compiled",
    "has_templates",
    "lookup",
    "parse",
    "references",
    "render",
]
