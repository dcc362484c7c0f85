"""The contracts' WSDLs and schemas as served: ``GET <url>?wsdl`` and ``GET <url>?xsd=<name>``.

Every WSDL has the RIVTABP21 shape (one document/literal operation, the ``LogicalAddress``
header part in the request, the responder's XSD imported); it is built from the Interaction
rather than kept as near-identical files. Schema locations are rewritten to this service's own
URL, so a client (zeep, CXF, .NET) that reads the WSDL fetches every schema from here. The same
XSDs, loaded locally with network access off, validate what the services receive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from typing import Any, cast

from lxml import etree

from npo_rivta.contracts import Interaction
from npo_rivta.headers import REGISTRY_NS

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
XS_NS = "http://www.w3.org/2001/XMLSchema"
REGISTRY_SCHEMA = "itintegration_registry_1.0.xsd"
_SCHEMAS = files("npo_rivta") / "schemas"
_IMPORTS = (f"{{{XS_NS}}}import", f"{{{XS_NS}}}include")


def schema_names() -> list[str]:
    return sorted(p.name for p in _SCHEMAS.iterdir() if p.name.endswith(".xsd"))


def schema_bytes(name: str, *, base_url: str | None = None) -> bytes:
    """One of the schemas; with ``base_url``, its imports point at ``<base_url>?xsd=<name>``.
    KeyError for a name that is not one of ours (nothing else is ever read from disk)."""
    if name not in schema_names():
        raise KeyError(name)
    data = (_SCHEMAS / name).read_bytes()
    if base_url is None:
        return data
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    _relocate(root, base_url)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def wsdl_bytes(interaction: Interaction, location: str) -> bytes:
    """The interaction's WSDL, its service at ``location`` and its schemas fetched from there."""
    root = _wsdl(interaction)
    _relocate(root, location)
    etree.SubElement(
        etree.SubElement(_w(root, "service", name=f"{interaction.name}ResponderService"), _q(
            WSDL_NS, "port"), name=f"{interaction.name}ResponderPort",
            binding=f"tns:{interaction.name}ResponderBinding"),
        _q(WSDL_SOAP_NS, "address"), location=location)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _wsdl(i: Interaction) -> etree._Element:
    name = i.name
    root = etree.Element(_q(WSDL_NS, "definitions"), name=f"{name}Interaction",
                         targetNamespace=i.wsdl_ns, nsmap={
                             "wsdl": WSDL_NS, "soap": WSDL_SOAP_NS, "xs": XS_NS, "tns": i.wsdl_ns,
                             "tjsr": i.responder_ns, "itr": REGISTRY_NS})
    etree.SubElement(root, _q(WSDL_NS, "documentation")).text = i.doc
    schema = etree.SubElement(_w(root, "types"), _q(XS_NS, "schema"), targetNamespace=i.wsdl_ns)
    etree.SubElement(schema, _q(XS_NS, "import"), namespace=i.responder_ns, schemaLocation=i.schema)
    etree.SubElement(schema, _q(XS_NS, "import"), namespace=REGISTRY_NS,
                     schemaLocation=REGISTRY_SCHEMA)
    request = _w(root, "message", name=f"{name}Request")
    _w(request, "part", name="LogicalAddress", element="itr:LogicalAddress")
    _w(request, "part", name="parameters", element=f"tjsr:{name}")
    _w(_w(root, "message", name=f"{name}Response"), "part", name="parameters",
       element=f"tjsr:{name}Response")
    operation = _w(_w(root, "portType", name=f"{name}ResponderInterface"), "operation", name=name)
    _w(operation, "input", message=f"tns:{name}Request")
    _w(operation, "output", message=f"tns:{name}Response")
    binding = _w(root, "binding", name=f"{name}ResponderBinding",
                 type=f"tns:{name}ResponderInterface")
    etree.SubElement(binding, _q(WSDL_SOAP_NS, "binding"), style="document",
                     transport="http://schemas.xmlsoap.org/soap/http")
    bound = _w(binding, "operation", name=name)
    etree.SubElement(bound, _q(WSDL_SOAP_NS, "operation"), soapAction=i.soap_action,
                     style="document")
    bound_in = _w(bound, "input")
    etree.SubElement(bound_in, _q(WSDL_SOAP_NS, "header"), use="literal",
                     message=f"tns:{name}Request", part="LogicalAddress")
    etree.SubElement(bound_in, _q(WSDL_SOAP_NS, "body"), use="literal", parts="parameters")
    etree.SubElement(_w(bound, "output"), _q(WSDL_SOAP_NS, "body"), use="literal")
    return root


def _relocate(root: etree._Element, base_url: str) -> None:
    for node in root.iter(*_IMPORTS):
        location = node.get("schemaLocation")
        if location:
            node.set("schemaLocation", f"{base_url}?xsd={location}")


def _w(parent: etree._Element, local: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, _q(WSDL_NS, local), attrib=attributes)


def _q(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


@cache
def validator(interaction: Interaction) -> etree.XMLSchema:
    """The responder's schema, compiled once (libxml2: C speed on the ingest path), loaded
    from the package with network access off."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    path = _SCHEMAS / interaction.schema
    return etree.XMLSchema(etree.parse(str(path), parser))


def schema_errors(interaction: Interaction, element: etree._Element) -> list[str]:
    """What makes ``element`` (a request or response of ``interaction``) invalid; [] when valid.
    Messages name elements and rules, never values."""
    schema = validator(interaction)
    if schema.validate(element):
        return []
    errors = cast(Iterable[Any], schema.error_log)
    return [f"line {e.line}: {_without_values(e.message)}" for e in errors][:10]


_VALUE = re.compile(r"value '[^']*'")


def _without_values(message: str) -> str:
    # libxml2 quotes the offending value ("The value 'x' is not accepted…"): keep the rule only.
    return _VALUE.sub("value", message)
