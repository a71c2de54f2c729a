"""Payload templates: ``{{ input.user_id }}``, ``{{ context.create-user-account.id }}``.

A string that is one template and nothing else becomes the value it names, with its type (a
number stays a number, a mapping a mapping); a template inside a longer string is replaced
by the value's text. Names are dotted paths from ``input`` (what the execution started
with), ``context`` (the workflow context: the input, each completed step's result under its
step id, and the ``context_updates`` steps returned), ``steps`` (each step's ``status`` and
``result``) and ``execution_id``. A path that leads nowhere is an error that names it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from hybridmesh.core.errors import ValidationError
from hybridmesh.core.serialization import dumps

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w.\-]*)\s*\}\}")
_MISSING = object()


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """``value`` with every template replaced; mappings and lists are rendered deeply.
    Raises ``ValidationError`` for a path that names nothing."""
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
    ``value`` holds no template. Compiled once per payload object."""
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
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole:
            return _getter(whole.group(1))
        if "{{" not in value:
            return lambda scope: value
        return lambda scope: _render_string(value, scope)
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


def has_templates(value: Any) -> bool:
    """Whether ``value`` holds a template anywhere (rendering it would change it)."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, Mapping):
        return any(has_templates(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_templates(item) for item in value)
    return False


def _render_string(text: str, scope: Mapping[str, Any]) -> Any:
    if "{{" not in text:
        return text
    whole = _TEMPLATE.fullmatch(text.strip())
    if whole:
        return lookup(whole.group(1), scope)

    def replace(match: re.Match[str]) -> str:
        found = lookup(match.group(1), scope)
        return found if isinstance(found, str) else _text(found)

    return _TEMPLATE.sub(replace, text)


def _getter(path: str) -> Renderer:
    """:func:`lookup` of ``path``, split once; plain dicts are walked without the
    ``Mapping`` protocol's detour."""
    first, *rest = path.split(".")

    def get(scope: Mapping[str, Any]) -> Any:
        current: Any = scope.get(first, _MISSING)
        for part in rest:
            if type(current) is not dict:
                break
            current = current.get(part, _MISSING)
        else:
            if current is not _MISSING:
                return current
        return lookup(path, scope)  # the general walk, and its error

    return get


def lookup(path: str, scope: Mapping[str, Any]) -> Any:
    """The value at dotted ``path`` in ``scope``; ``ValidationError`` when there is none."""
    current: Any = scope
    walked: list[str] = []
    for part in path.split("."):
        walked.append(part)
        found: Any = _MISSING
        if isinstance(current, Mapping):
            found = current.get(part, _MISSING)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            found = current[int(part)]
        if found is _MISSING:
            raise ValidationError(f"template {{{{ {path} }}}}: nothing at {'.'.join(walked)!r}")
        current = found
    return current


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return dumps(value)


__all__ = ["Renderer", "compiled", "has_templates", "lookup", "render"]
