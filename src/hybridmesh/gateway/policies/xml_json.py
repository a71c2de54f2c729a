"""``xml``: JSON clients in front of a legacy backend that speaks XML.

Settings::

    xml:
      request: json_to_xml    # a JSON request body goes to the backend as XML
      root: order             # that XML's root element (default: request)
      response: xml_to_json   # an XML answer goes to the client as JSON
      max_bytes: 10485760     # the largest XML answer converted (a larger one is 502)

``json_to_xml`` takes requests whose ``Content-Type`` is JSON: the body becomes
``<root>...</root>`` (a JSON list becomes ``<item>`` elements under the root, a field
holding a list repeats its element, ``"@name"`` fields are attributes and ``"#text"`` is
text, as xmltodict writes them) with ``Content-Type: application/xml; charset=utf-8``.
Other requests go through as they are; a JSON body that is not JSON, or whose names
cannot be XML element names, is answered 400 and never reaches the backend.

``xml_to_json`` takes answers whose ``Content-Type`` is XML (``application/xml``,
``text/xml``, ``+xml``) and are not compressed: the client gets the document as JSON
(``{"root": {...}}``; every value is text, attributes are ``"@name"``, repeated elements
are lists) with ``Content-Type: application/json``. An answer that is not well-formed XML,
holds a document type declaration (DTD), or is over ``max_bytes`` is answered 502. DTDs
are refused outright: no entity is ever declared, so entity expansion attacks (the
"billion laughs", quadratic blowup) and external entities (local files, URLs) cannot
happen, whatever the backend sends.
"""

from __future__ import annotations

import pyexpat
import re
from typing import Any, Literal, NoReturn

import xmltodict
from pydantic import BaseModel, ConfigDict, Field

from hybridmesh.core.serialization import dumpb, loads, walk
from hybridmesh.gateway.config import PolicyKind, register_policy
from hybridmesh.gateway.http import Answer, Headers, ProxyRequest, problem
from hybridmesh.gateway.policies.base import (
    ORDER_TRANSFORM,
    Policy,
    PolicyContext,
    ReplaceAnswer,
    register_builder,
)
from hybridmesh.gateway.policies.transform import is_json
from hybridmesh.observability import get_logger

log = get_logger("hybridmesh.gateway.xml")

#: After the transformers on the way in (they change the JSON, then it becomes XML), so
#: before them on the way back (the XML answer becomes JSON, then they change it).
ORDER_XML = ORDER_TRANSFORM + 5
XML_CONTENT_TYPE = "application/xml; charset=utf-8"
#: What a JSON field's name must be to become an element (or, after "@", an attribute):
#: an XML name (letters, digits, "_", "-", ".", ":"; not starting with a digit, "-" or ".").
_XML_NAME = re.compile(r"@?[^\W\d][\w.:-]*|#text")


class XmlSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    request: Literal["json_to_xml"] | None = None
    #: The root element of a request's XML.
    root: str = Field("request", pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
    response: Literal["xml_to_json"] | None = None
    #: The largest XML answer converted to JSON, in bytes.
    max_bytes: int = Field(10 * 1024 * 1024, ge=1, le=1024 * 1024 * 1024)


class DocumentTypeRefused(ValueError):
    pass


def _refuse_dtd(*_: Any) -> None:
    raise DocumentTypeRefused("a document type declaration (DTD) is not accepted")


def _refuse_external(*_: Any) -> int:
    raise DocumentTypeRefused("external entities are not accepted")


class NoDtdExpat:
    """What :func:`xmltodict.parse` creates its parser with: pyexpat's, made to refuse a
    document type declaration as soon as it starts, and with it every entity declaration
    (so no entity is expanded) and every external entity (nothing is fetched)."""

    @staticmethod
    def ParserCreate(  # the name xmltodict calls
        encoding: str | None = None, namespace_separator: str | None = None
    ) -> Any:
        parser = pyexpat.ParserCreate(encoding, namespace_separator)
        parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = _refuse_dtd
        parser.EntityDeclHandler = _refuse_dtd
        parser.UnparsedEntityDeclHandler = _refuse_dtd
        parser.ExternalEntityRefHandler = _refuse_external
        return parser


def is_xml(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media in ("application/xml", "text/xml") or media.endswith("+xml")


def xml_to_json(body: bytes) -> bytes:
    """An XML document as JSON bytes; ValueError when it is not well-formed, holds a DTD,
    or nests too deep for JSON."""
    try:
        document = xmltodict.parse(body, expat=NoDtdExpat, disable_entities=True)
    except pyexpat.ExpatError as error:
        raise ValueError(f"not well-formed XML: {error}") from None
    try:
        return dumpb(document)
    except TypeError as error:  # orjson: nested deeper than JSON encoding allows
        raise ValueError(str(error)) from None


def json_to_xml(document: Any, root: str) -> bytes:
    """A JSON document as an XML document under ``root``; ValueError when a name cannot
    be an XML name or it nests too deep."""
    for where, key, is_key in walk("", document):
        if is_key and not (isinstance(key, str) and _XML_NAME.fullmatch(key)):
            raise ValueError(f"{where}: {str(key)[:40]!r} is not an XML name")
    if isinstance(document, list):
        document = {"item": document} if document else None
    try:
        text = xmltodict.unparse({root: document}, encoding="utf-8")
    except RecursionError:
        raise ValueError("the document nests too deep") from None
    return text.encode("utf-8")


class Xml(Policy):
    def __init__(self, settings: XmlSettings, context: PolicyContext) -> None:
        self.to_xml = settings.request == "json_to_xml"
        self.to_json = settings.response == "xml_to_json"
        self.root = settings.root
        self.max_bytes = settings.max_bytes
        self.route = context.route
        self.transforms_response_body = self.to_json
        self.reads_request_body = self.to_xml

    async def request(self, request: ProxyRequest) -> Answer | None:
        if not self.to_xml or not request.body.strip():
            return None
        headers = request.headers
        if not is_json(headers.get("content-type")):
            return None
        try:
            document = loads(request.body)
        except ValueError as error:
            return problem(
                400, f"the request body is not valid JSON: {error}", request_id=request.request_id
            )
        try:
            request.body = json_to_xml(document, self.root)
        except ValueError as error:
            return problem(
                400,
                f"the request body cannot be written as XML: {error}",
                request_id=request.request_id,
            )
        headers.set("content-type", XML_CONTENT_TYPE)
        return None

    def response_body(
        self, request: ProxyRequest, status: int, headers: Headers, body: bytes
    ) -> bytes:
        if not body or not is_xml(headers.get("content-type")):
            return body
        encoding = headers.get("content-encoding")
        if encoding is not None and encoding.strip().lower() != "identity":
            return body  # compressed: left as the backend sent it
        if len(body) > self.max_bytes:
            self._refuse(request, f"the backend's XML answer is over {self.max_bytes} bytes")
        try:
            converted = xml_to_json(body)
        except ValueError as error:
            self._refuse(request, f"the backend's XML answer cannot be converted: {error}")
        headers.set("content-type", "application/json")
        return converted

    def _refuse(self, request: ProxyRequest, detail: str) -> NoReturn:
        log.warning("gateway: route %s: %s", self.route, detail)
        raise ReplaceAnswer(problem(502, detail, request_id=request.request_id))


register_policy(PolicyKind("xml", XmlSettings, ORDER_XML, __doc__ or ""))
register_builder("xml", Xml)
