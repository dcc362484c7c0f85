"""SOAP 1.1 envelopes and faults (RIVTABP21: document/literal, UTF-8).

A fault carries a stable code: in ``faultstring`` as ``"<code>: <text>"`` (as Inera's engagement
index words its EI codes) and alone in ``detail/npo:code``, so a client can branch on it without
parsing text. SOAP 1.1 over HTTP answers a fault with status 500; a refusal that HTTP has its own
status for and a client or proxy acts on (413 too large, 429 with ``Retry-After``) keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from npo_rivta.xml import text

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
FAULT_NS = "urn:npo:rivta:fault:1"  # where the stable code sits in a fault's detail
CONTENT_TYPE = "text/xml; charset=utf-8"
FAULT_STATUS = 500

_ENVELOPE = f"{{{SOAP_ENV}}}Envelope"
_HEADER = f"{{{SOAP_ENV}}}Header"
_BODY = f"{{{SOAP_ENV}}}Body"
_FAULT = f"{{{SOAP_ENV}}}Fault"
_CODE = f"{{{FAULT_NS}}}code"


class SoapFault(Exception):
    """An answer as a SOAP fault. ``client``: the caller's request is at fault (soap:Client),
    else the server (soap:Server); ``status``: the HTTP status it is answered with."""

    def __init__(self, code: str, text: str, *, client: bool = True,
                 status: int = FAULT_STATUS) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.client = client
        self.status = status

    def to_bytes(self) -> bytes:
        return fault(self.code, self.text, client=self.client)


@dataclass(frozen=True)
class Envelope:
    """A received envelope: its header blocks and the one element of its body."""

    headers: tuple[etree._Element, ...]
    body: etree._Element

    def header(self, tag: str) -> etree._Element | None:
        """The first header block of ``tag`` (Clark notation), or None."""
        for block in self.headers:
            if block.tag == tag:
                return block
        return None

    def header_text(self, tag: str) -> str | None:
        block = self.header(tag)
        return None if block is None else text(block).strip()


def read_envelope(root: etree._Element) -> Envelope:
    """The envelope of a parsed message; SoapFault ``soap.not_envelope`` when it is none."""
    if root.tag != _ENVELOPE:
        raise SoapFault("soap.not_envelope", "the message is not a SOAP 1.1 envelope")
    header = root.find(_HEADER)
    body = root.find(_BODY)
    if body is None:
        raise SoapFault("soap.not_envelope", "the envelope has no Body")
    parts = [child for child in body if isinstance(child.tag, str)]
    if len(parts) != 1:
        raise SoapFault("soap.not_envelope", "the Body must hold exactly one element")
    blocks = () if header is None else tuple(c for c in header if isinstance(c.tag, str))
    return Envelope(blocks, parts[0])


def envelope(body: etree._Element, headers: Iterable[etree._Element] = ()) -> bytes:
    """A complete message: XML declaration, Envelope, optional Header, Body."""
    root = etree.Element(_ENVELOPE, nsmap={"soap": SOAP_ENV})
    blocks = list(headers)
    if blocks:
        etree.SubElement(root, _HEADER).extend(blocks)
    etree.SubElement(root, _BODY).append(body)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def fault(code: str, message: str, *, client: bool = True) -> bytes:
    """A SOAP 1.1 fault message with ``code`` in faultstring and detail."""
    node = etree.Element(_FAULT, nsmap={"soap": SOAP_ENV})
    etree.SubElement(node, "faultcode").text = "soap:Client" if client else "soap:Server"
    etree.SubElement(node, "faultstring").text = f"{code}: {message}"
    detail = etree.SubElement(node, "detail")
    etree.SubElement(detail, _CODE, nsmap={"npo": FAULT_NS}).text = code
    return envelope(node)


@dataclass(frozen=True)
class ReceivedFault:
    """A fault as a client reads it."""

    faultcode: str
    faultstring: str
    code: str | None


def read_fault(env: Envelope) -> ReceivedFault | None:
    """The fault in a received envelope, or None when the body is an answer."""
    if env.body.tag != _FAULT:
        return None
    return ReceivedFault(
        text(env.body.find("faultcode")).strip(), text(env.body.find("faultstring")),
        (text(env.body.find(f"detail/{_CODE}")).strip() or None),
    )
