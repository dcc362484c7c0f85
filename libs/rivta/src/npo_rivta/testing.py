"""What every RIV-TA endpoint's tests send it: the XML attacks each must refuse with its code."""

from __future__ import annotations

from npo_rivta.soap import SOAP_ENV

OPEN = f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
CLOSE = "</soap:Body></soap:Envelope>"
_LAUGHS = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))


def nested(levels: int) -> bytes:
    """An envelope whose body nests ``levels`` elements deep."""
    return (OPEN + "<a>" * levels + "</a>" * levels + CLOSE).encode()


def attacks() -> dict[str, tuple[bytes, str]]:
    """Name → (message, the fault code it must get): external entities, entity expansion,
    deep nesting."""
    return {
        "external entity": (
            ('<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
             + OPEN + "<x>&x;</x>" + CLOSE).encode(), "xml.dtd_forbidden"),
        "entity expansion": (
            (f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY l0 "lol">{_LAUGHS}]>'
             + OPEN + "<x>&l9;</x>" + CLOSE).encode(), "xml.dtd_forbidden"),
        "deep nesting": (nested(100_000), "xml.too_deep"),
        "moderately deep nesting": (nested(200), "xml.too_deep"),
    }
