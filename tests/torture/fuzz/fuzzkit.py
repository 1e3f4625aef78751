"""What every fuzz test shares: the hypothesis settings and the one property that matters.

The property: a parser given outside input either returns, or raises one of the stack's
errors (:class:`~agent.errors.OtaError`) with a message. A bare ``IndexError``, ``KeyError``,
``UnicodeDecodeError``... escaping is a bug in the parser, and the test fails showing the input.

Examples per test: ``OTA_FUZZ_EXAMPLES`` (default 30, what CI runs); a long run sets it to
thousands (``OTA_FUZZ_EXAMPLES=20000 python -m pytest tests/torture/fuzz``). No deadline per
example (a slow machine must not fail a test); each test module carries a timeout marker.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from agent.errors import OtaError

T = TypeVar("T")

EXAMPLES = int(os.environ.get("OTA_FUZZ_EXAMPLES", "30"))
#: the bound on each test module (a hang fails it): generous per example, so only a hang trips it
TIMEOUT = max(120, EXAMPLES)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 30,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

#: JSON values as a peer or a backend may send them
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=25,
)


def clear_outcome(parse: Callable[..., T], *args: Any, allowed: tuple[type[BaseException], ...] = (OtaError,),
                  **kwargs: Any) -> T | BaseException:
    """Run ``parse``; its result, or the error it raised if that is one of ``allowed`` with a message."""
    try:
        return parse(*args, **kwargs)
    except allowed as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        return e


def mutate(data: bytes, draw: Callable[[st.SearchStrategy[Any]], Any]) -> bytes:
    """A few byte-level edits of ``data``: replace, insert, delete or duplicate a slice."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not out:
            out += draw(st.binary(min_size=1, max_size=8))
            continue
        pos = draw(st.integers(0, len(out) - 1))
        op = draw(st.sampled_from(("replace", "insert", "delete", "duplicate", "truncate")))
        if op == "replace":
            out[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del out[pos:pos + draw(st.integers(1, 16))]
        elif op == "duplicate":
            end = min(len(out), pos + draw(st.integers(1, 64)))
            out[pos:pos] = out[pos:end]
        else:
            del out[pos:]
    return bytes(out)


def edit_document(doc: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
    """A copy of the JSON/YAML document ``doc`` with a few values replaced or deleted, or keys added."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        if not paths:
            return draw(JSON)
        *parent_path, key = draw(st.sampled_from(paths))
        parent = doc
        for k in parent_path:
            parent = parent[k]
        action = draw(st.sampled_from(("replace", "delete", "add")))
        if action == "delete":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(JSON)
        else:
            parent[key] = draw(JSON)
    return doc


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into a document (mapping keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found
