"""XML from inside a document parsed safely: entity declarations refused, no DTD loaded, nothing fetched.

Parses bytes it is given; it never opens a file or a URL, and never expands an entity.
"""

from __future__ import annotations

import io
from typing import Any

from pipeline.errors import DocumentError, first_line


def parse_guarded(data: bytes, what: str, handler: Any = None) -> None:
    """Stream data through expat (defusedxml) into a SAX handler: DocumentError when it declares an XML entity
    (billion laughs, or an external one reading a file or URL); xml.sax.SAXException (the caller's to word) when it
    is not well-formed. No DTD is loaded and nothing is fetched; it costs no memory."""
    from xml.sax.handler import ContentHandler, feature_external_ges, feature_external_pes

    import defusedxml
    import defusedxml.expatreader

    # forbid_external=False only so a DOCTYPE naming an external DTD (XHTML 1.1's, RSS 0.91's) is allowed; with both
    # external-entity features off expat never loads it, and every entity declaration is refused.
    parser = defusedxml.expatreader.create_parser(forbid_dtd=False, forbid_entities=True, forbid_external=False)
    parser.setFeature(feature_external_ges, False)
    parser.setFeature(feature_external_pes, False)
    parser.setContentHandler(handler or ContentHandler())
    try:
        parser.parse(io.BytesIO(data))
    except defusedxml.EntitiesForbidden as exc:
        if exc.sysid or exc.pubid:
            raise DocumentError(f"refused: {what} declares an external entity {exc.name!r} "
                                f"({exc.sysid or exc.pubid!s}); such entities read local files or URLs") from exc
        raise DocumentError(f"refused: {what} declares an XML entity {exc.name!r} "
                            "(entities are how XML bombs such as billion laughs are built)") from exc
    except defusedxml.DefusedXmlException as exc:
        raise DocumentError(f"refused: {what}: {exc}") from exc


def refuse_entities(data: bytes, what: str) -> bool:
    """DocumentError when data declares an XML entity (parse_guarded); False when it is not well-formed XML."""
    import xml.sax

    try:
        parse_guarded(data, what)
    except (xml.sax.SAXException, ValueError):
        return False
    return True


def _parser() -> Any:
    from lxml import etree

    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                           remove_comments=True, remove_pis=True)


def parse_xml(data: bytes, what: str) -> Any:
    """The root element of well-formed XML with no entity declarations; anything else is a DocumentError."""
    from lxml import etree

    if not refuse_entities(data, what):
        raise DocumentError(f"damaged {what}: not well-formed XML")
    try:
        return etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DocumentError(f"damaged {what}: not well-formed XML ({first_line(exc)})") from exc


def parse_xhtml(data: bytes, what: str) -> Any:
    """The root of an XHTML page: as XML when it is well-formed, else by the HTML parser (which expands no
    entities), as reading systems do with the tag soup some books carry."""
    from lxml import etree, html

    if refuse_entities(data, what):
        try:
            return etree.fromstring(data, _parser())
        except (etree.XMLSyntaxError, ValueError):
            pass
    try:
        root = html.fromstring(data, parser=html.HTMLParser(no_network=True, remove_comments=True,
                                                             remove_pis=True, huge_tree=False))
    except (etree.ParserError, ValueError) as exc:
        raise DocumentError(f"damaged {what}: not XHTML or HTML ({first_line(exc)})") from exc
    return root
