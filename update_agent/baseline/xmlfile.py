"""Reading a baseline XML file safely and validating it against its XSD.

Baseline files come from outside the car (the software baseline is delivered
with every update), so they are parsed as hostile input:

* lxml's parser with entity substitution, DTD loading, network access and
  huge-tree mode off: nothing is fetched, nothing is expanded;
* any DOCTYPE at all (internal subset, external DTD) is refused outright, so
  "billion laughs" and external-entity (XXE) files stop here, before the XSD
  or our code sees their content;
* a size cap before parsing;
* validation against the XSD shipped in ``configs/``.

A file that fails gets a :class:`~agent.errors.BaselineFileError` naming the
file, the line, the element and the reason (the first fault; the count of the
others is appended).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from lxml import etree

from agent.errors import BaselineFileError, VehicleVersionError
from update_agent import vehicle_version

#: refuse larger files before parsing (1,000 vehicle versions x 100 ECUs is ~8 MB)
MAX_BYTES = 32 * 1024 * 1024

HARDWARE_SCHEMA = "hardware-baseline.xsd"
SOFTWARE_SCHEMA = "software-baseline.xsd"

_ELEMENT_IN_MESSAGE = re.compile(r"Element '(?:\{[^}]*\})?([^']+)'")
_NAMESPACE_IN_MESSAGE = re.compile(r"\{[^}]*\}")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


def safe_parser() -> etree.XMLParser:
    """The one parser configuration used for every baseline file and schema."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        remove_blank_text=True,
        collect_ids=False,
    )


@cache
def schema(name: str) -> etree.XMLSchema:
    """An XSD shipped in the ``configs`` package."""
    data = resources.files("configs").joinpath(name).read_bytes()
    return etree.XMLSchema(etree.fromstring(data, safe_parser()))


def load(path: str | Path, schema_name: str) -> etree._Element:
    """Parse ``path`` safely, refuse any DOCTYPE, validate against ``schema_name``; the root."""
    p = Path(path)
    source = str(p)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise BaselineFileError(f"file is {size} bytes, more than the {MAX_BYTES} allowed",
                                    source=source)
        data = p.read_bytes()
    except OSError as e:
        raise BaselineFileError(f"cannot read: {e.strerror or e}", source=source) from e
    return load_bytes(data, schema_name, source=source)


def load_bytes(data: bytes, schema_name: str, *, source: str) -> etree._Element:
    if len(data) > MAX_BYTES:
        raise BaselineFileError(f"document is {len(data)} bytes, more than the {MAX_BYTES} allowed",
                                source=source)
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as e:
        doctype = _doctype_line(data)
        if doctype is not None:  # e.g. an entity the refused DTD would have declared
            raise _doctype_error(source, doctype) from e
        raise BaselineFileError(f"not well-formed XML: {e.msg}", source=source,
                                line=e.lineno or None) from e
    docinfo: Any = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _doctype_error(source, _doctype_line(data))
    xsd = schema(schema_name)
    if not xsd.validate(root):
        raise _schema_error(root, xsd, schema_name, source)
    return root


def _doctype_line(data: bytes) -> int | None:
    match = _DOCTYPE.search(data)
    return None if match is None else data.count(b"\n", 0, match.start()) + 1


def _doctype_error(source: str, line: int | None) -> BaselineFileError:
    return BaselineFileError(
        "a DOCTYPE / DTD is not allowed in a baseline file (entity expansion and external "
        "entities are refused; nothing was expanded or fetched)",
        source=source, line=line, element="!DOCTYPE")


def _schema_error(root: etree._Element, xsd: etree.XMLSchema, schema_name: str,
                  source: str) -> BaselineFileError:
    log: Any = xsd.error_log
    entries = [e for e in log if "No precomputed value" not in e.message]
    if not entries:  # pragma: no cover - libxml2 always says why
        return BaselineFileError("does not match its schema", source=source)
    first = entries[0]
    match = _ELEMENT_IN_MESSAGE.search(first.message)
    element = match.group(1) if match else None
    reason = _NAMESPACE_IN_MESSAGE.sub("", first.message).rstrip(".")
    if "[facet 'pattern']" in first.message and "attribute 'version'" in first.message \
            and element == "vehicleVersion":
        reason = _vehicle_version_reason(root, first.path) or reason
    more = len(entries) - 1
    if more:
        reason += f" (and {more} more schema error{'s' if more > 1 else ''})"
    return BaselineFileError(f"not valid against {schema_name}: {reason}", source=source,
                             line=first.line or None, element=element)


def _vehicle_version_reason(root: etree._Element, path: str | None) -> str | None:
    """Say where a vehicle version attribute goes wrong, using the version parser."""
    if not path:
        return None
    found = root.getroottree().xpath(path)
    if not isinstance(found, list) or not found or not isinstance(found[0], etree._Element):
        return None
    value = found[0].get("version")
    if value is None:
        return None
    try:
        vehicle_version.parse(value)
    except VehicleVersionError as e:
        return f"attribute 'version': {e}"
    return None


def local_name(element: etree._Element) -> str:
    return etree.QName(element).localname
