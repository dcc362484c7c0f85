"""XML in, safely: no entities, no DTD, no network, bounded size and depth; stable refusal codes.

Every RIV-TA message this project reads goes through ``parse``. The parser never resolves an
entity, never loads a DTD or anything over the network and keeps libxml2's limits on (no
``huge_tree``); a document with a DOCTYPE is refused (SOAP 1.1 forbids it in messages), so
neither external entities nor entity expansion can reach the application.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from lxml import etree

MAX_BYTES = 8 * 1024 * 1024  # an Update of 1000 engagements is about 1 MB
MAX_DEPTH = 64  # the deepest read contract nests about 15 elements below the envelope


class XmlRejected(Exception):
    """The bytes are not an acceptable XML document; ``code`` is stable, ``detail`` names no data."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


# A DOCTYPE can only follow the XML declaration, comments and processing instructions. The
# repetition is possessive: without it, a document without a DOCTYPE made the lazy ``.*?`` try
# every later "?>" and "-->" of the whole document before the match failed.
_DOCTYPE_FIRST = re.compile(rb"(?:\xef\xbb\xbf)?\s*(?:<\?.*?\?>\s*|<!--.*?-->\s*)*+<!DOCTYPE", re.S)
_local = threading.local()  # lxml parsers must not be shared between threads


def _parser() -> etree.XMLParser:
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, collect_ids=False, remove_pis=True,
        )
        _local.parser = parser
    return parser


def parse(data: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> etree._Element:
    """The document's root element, or XmlRejected (``xml.too_large``, ``xml.malformed``,
    ``xml.dtd_forbidden``, ``xml.too_deep``)."""
    if len(data) > max_bytes:
        raise XmlRejected("xml.too_large", f"the document is larger than {max_bytes} bytes")
    if _DOCTYPE_FIRST.match(data):  # refused before libxml2 reads a single declaration
        raise XmlRejected("xml.dtd_forbidden", "a document type declaration is not allowed")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as error:
        if "depth" in str(error).lower():
            raise XmlRejected("xml.too_deep", "the document nests too deeply") from None
        raise XmlRejected("xml.malformed", "the document is not well-formed XML") from None
    docinfo: Any = root.getroottree().docinfo  # lxml-stubs lack doctype
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("xml.dtd_forbidden", "a document type declaration is not allowed")
    if depth_exceeds(root, max_depth):
        raise XmlRejected("xml.too_deep", f"the document nests deeper than {max_depth}")
    return root


def depth_exceeds(root: etree._Element, limit: int) -> bool:
    """Whether any element lies deeper than ``limit`` (one XPath evaluated in libxml2, not a
    walk of the tree in Python)."""
    return bool(_deeper_than(limit)(root))


@lru_cache(maxsize=8)
def _deeper_than(limit: int) -> etree.XPath:
    return etree.XPath("boolean(/" + "/".join(["*"] * (limit + 1)) + ")")


def text(element: etree._Element | None) -> str:
    """An element's text, '' when absent or empty."""
    if element is None:
        return ""
    return element.text or ""
