"""Reading WeChat's small, flat XML safely: ``<xml><Name>text</Name>...</xml>``.

The standard library's expat, with everything WeChat never sends refused before it can do
harm: a document type declaration (so no entity is ever declared, let alone expanded: no
billion laughs, no external entity fetched), processing instructions, an encoding other than
UTF-8, nesting deeper than :data:`MAX_DEPTH`, a repeated child (two ``<Encrypt>``: which one
is meant?) and a body larger than the bound, checked before parsing.

Why not ``defusedxml``: it refuses the same DTD and entity constructs through the same expat
handlers, but bounds neither the size nor the depth, adds a dependency, and a flat dictionary
is all a push needs: the handful of handlers below are the whole of it.
"""

from __future__ import annotations

from typing import NoReturn
from xml.parsers import expat

from ..errors import ErrorReason, InvalidCallbackRequest, RequestTooLarge

#: A push is a few hundred bytes; an official account's message a few KiB.
MAX_XML_BYTES = 64 * 1024
#: ``<xml>`` is depth 1 and its fields depth 2; WeChat's richest messages nest a list or two
#: below that. Deeper is not WeChat.
MAX_DEPTH = 8


class _Refused(Exception):
    """Raised inside an expat handler: stops the parse at once."""


def parse_flat_xml(data: bytes | str, *, max_bytes: int = MAX_XML_BYTES) -> dict[str, str]:
    """The text of each child of the root element, by tag (CDATA and character references
    resolved; a child holding elements of its own maps to its own text only, usually ``""``).

    :class:`~asgi_wechat_oauth.errors.RequestTooLarge` over ``max_bytes``;
    :class:`~asgi_wechat_oauth.errors.InvalidCallbackRequest` (``invalid_body``) for anything
    else WeChat would not send: not UTF-8, not well-formed, truncated, a DOCTYPE, an entity, a
    processing instruction, nesting deeper than :data:`MAX_DEPTH`, a child given twice."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise RequestTooLarge(
            ErrorReason.BODY_TOO_LARGE, f"The XML body is larger than {max_bytes} bytes."
        )
    try:
        raw.decode("utf-8")  # strict: the parser below is told UTF-8 whatever the body says
    except UnicodeDecodeError:
        _invalid("is not UTF-8")
    fields: dict[str, str] = {}
    depth = 0
    current: str | None = None
    text: list[str] = []

    def refuse(*_: object) -> NoReturn:
        raise _Refused

    def xml_declaration(version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise _Refused

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth, current
        depth += 1
        if depth > MAX_DEPTH:
            raise _Refused
        if depth == 2:
            if name in fields:
                raise _Refused
            fields[name] = ""
            current = name
            text.clear()

    def end(name: str) -> None:
        nonlocal depth, current
        if depth == 2 and current is not None:
            fields[current] = "".join(text)
            current = None
        depth -= 1

    def characters(data: str) -> None:
        if depth == 2:
            text.append(data)

    parser = expat.ParserCreate(encoding="UTF-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.XmlDeclHandler = xml_declaration
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.NotationDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.ProcessingInstructionHandler = refuse
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    parser.buffer_text = True
    try:
        parser.Parse(raw, True)
    except _Refused:
        _invalid(
            "holds what WeChat never sends (a DOCTYPE, an entity, a processing "
            "instruction, a repeated or deeply nested element)"
        )
    except (expat.ExpatError, RecursionError, ValueError):
        _invalid("is not well-formed XML")
    return fields


def _invalid(what: str) -> NoReturn:
    raise InvalidCallbackRequest(ErrorReason.INVALID_BODY, f"The XML body {what}.")
