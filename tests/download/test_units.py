"""Pure parts: range decisions, retry timing, order validation, rate / ETA, config validation."""

from __future__ import annotations

import email.utils
import re
from pathlib import Path
from typing import Any

import pytest

from agent.config.node import Node
from agent.errors import ConfigurationError, TransportError
from bench.backend.faults import FaultBoard, parse_faults
from bench.backend.ranges import Plan, plan
from dmclient.config import DmclientConfig
from dmclient.order import InvalidOrderError, Order
from dmclient.progress import RateMeter
from dmclient.retry import RetryPolicy, parse_retry_after
from dmclient.state import StateDb

ETAG = '"abc-1"'
DATE = "Sat, 21 Nov 2026 18:00:00 GMT"


def p(range_header: str | None, if_range: str | None = None, size: int = 1000) -> Plan:
    return plan(range_header, if_range, size=size, etag=ETAG, last_modified=DATE)


@pytest.mark.parametrize(("header", "expected"), [
    (None, Plan(200, 0, 1000)),
    ("bytes=100-", Plan(206, 100, 1000)),
    ("bytes=100-199", Plan(206, 100, 200)),
    ("bytes=900-5000", Plan(206, 900, 1000)),
    ("bytes=-100", Plan(206, 900, 1000)),
    ("bytes=-5000", Plan(206, 0, 1000)),
    ("bytes=1000-", Plan(416)),
    ("bytes=-0", Plan(416)),
    ("bytes=200-100", Plan(200, 0, 1000)),  # invalid: ignored
    ("bytes=0-1,5-6", Plan(200, 0, 1000)),  # several ranges: whole file
    ("items=1-2", Plan(200, 0, 1000)),
])
def test_range_plans(header: str | None, expected: Plan) -> None:
    assert p(header) == expected


def test_if_range_matches_only_the_same_strong_etag_or_date() -> None:
    assert p("bytes=10-", ETAG).status == 206
    assert p("bytes=10-", DATE).status == 206
    assert p("bytes=10-", '"other"').status == 200
    assert p("bytes=10-", "W/" + ETAG).status == 200  # weak validators never match If-Range
    assert p("bytes=10-", "Sat, 21 Nov 2026 18:00:01 GMT").status == 200
    assert Plan(206, 10, 20).content_range(1000) == "bytes 10-19/1000"
    assert Plan(416).content_range(1000) == "bytes */1000"


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0, random=lambda: 1.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert RetryPolicy(base_delay=1.0, random=lambda: 0.25).delay(3) == 1.0
    assert policy.delay(1, retry_after=30) == 30  # the server's wish wins over a shorter back-off
    with pytest.raises(TransportError, match="more than the configured limit"):
        RetryPolicy(max_retry_after=60).delay(1, retry_after=61)


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == pytest.approx(90)
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_rate_and_eta_from_an_injected_clock() -> None:
    meter = RateMeter(tau=1.0)
    assert meter.eta(0, 100) is None
    for t in range(11):
        meter.sample(float(t), t * 1000)
    assert meter.rate == pytest.approx(1000)
    assert meter.eta(10_000, 20_000) == pytest.approx(10)
    assert meter.eta(20_000, 20_000) == 0


GOOD = {"url": "https://backend.example/files/a.bin", "length": 10, "hashes": {"sha256": "a" * 64}}


@pytest.mark.parametrize(("target", "message"), [
    ({**GOOD, "length": 0}, "targets[0].length: expected a positive byte count"),
    ({**GOOD, "length": True}, "targets[0].length"),
    ({**GOOD, "hashes": {"md5": "x"}}, "targets[0].hashes: unsupported hash algorithm 'md5'"),
    ({**GOOD, "hashes": {"sha512": "a" * 128}}, "targets[0].hashes: sha256 is required"),
    ({**GOOD, "hashes": {"sha256": "a" * 63}}, "targets[0].hashes.sha256: not a sha256 hex digest"),
    ({**GOOD, "url": "http://backend.example/a.bin"}, "targets[0].url: expected an https:// URL"),
    ({**GOOD, "url": "ftp://x/a"}, "targets[0].url"),
    ({"length": 10, "hashes": {"sha256": "a" * 64}}, "targets[0]: needs a url (full image) or a delta"),
    ({**GOOD, "delta": {"base": {"sha256": "b" * 64}, "url": "p", "length": 5}},
     "targets[0].delta.hashes: required"),
    ({**GOOD, "surprise": 1}, "targets[0]: unknown key 'surprise'"),
    ({**GOOD, "name": "../etc"}, "targets[0].name"),
])
def test_malformed_targets_name_the_field(target: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidOrderError, match=re.escape(message)):
        Order.parse({"targets": [target]}, base_url=None)


def test_orders_resolve_relative_urls_and_refuse_duplicates() -> None:
    order = Order.parse({"targets": [{**GOOD, "url": "engine.bin"}]}, base_url="https://b.example/files/")
    assert order.targets[0].url == "https://b.example/files/engine.bin"
    with pytest.raises(InvalidOrderError, match="same image as targets"):
        Order.parse({"targets": [GOOD, GOOD]})
    with pytest.raises(InvalidOrderError, match="non-empty list"):
        Order.parse({"targets": []})
    with pytest.raises(InvalidOrderError, match="pin"):
        Order.parse({"targets": [GOOD], "pin": "no spaces allowed"})


def test_fault_knobs_are_validated() -> None:
    (fault,) = parse_faults([{"path": "a.bin", "drop_after": 10, "times": 2}], "test")
    board = FaultBoard([fault])
    assert board.take("b.bin") is None
    assert board.take("a.bin") is fault and board.take("a.bin") is fault and board.take("a.bin") is None
    with pytest.raises(ConfigurationError, match=r"faults\[0\]: unknown key 'drop_afterr'"):
        parse_faults([{"path": "a.bin", "drop_afterr": 10}], "test")
    with pytest.raises(ConfigurationError, match=r"faults\[0\].status"):
        parse_faults([{"path": "a.bin", "status": 700}], "test")


def dm_config(tmp_path: Path, section: dict[str, object]) -> dict[str, Any]:
    node = Node({"dmclient": section}, source=str(tmp_path / "agent.yaml"), path="")
    return DmclientConfig.own_fields(node.child("dmclient"))


def test_dmclient_config_sizes_paths_and_errors(tmp_path: Path) -> None:
    fields = dm_config(tmp_path, {"backend": {"url": "https://b.example/base", "ca_file": "pki/ca.pem"},
                                  "downloads": {"checkpoint_bytes": "8MiB"}, "cache": {"dir": "cache", "budget": 1024}})
    assert fields["backend_url"] == "https://b.example/base/"
    assert fields["checkpoint_bytes"] == 8 << 20
    assert fields["cache_dir"] == tmp_path / "cache"
    assert fields["tls"].ca_file == tmp_path / "pki" / "ca.pem"
    bad: list[tuple[dict[str, object], str]] = [
        ({"backend": {"url": "http://b.example"}}, "dmclient.backend.url: expected an https"),
        ({"backend": {"cert_file": "c.pem"}}, "dmclient.backend.key_file: cert_file and key_file"),
        ({"downloads": {"chunk_bytes": "lots"}}, "dmclient.downloads.chunk_bytes: expected a size"),
        ({"downloads": {"concurrency": 0}}, "dmclient.downloads.concurrency"),
        ({"cache": {"budjet": 1}}, "unknown key 'budjet'")]
    for section, message in bad:
        with pytest.raises(ConfigurationError, match=message):
            dm_config(tmp_path, section)


def test_state_db_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(ConfigurationError, match="state database schema 99 is newer than this dmclient understands"):
        StateDb(path)
    (tmp_path / "junk.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigurationError, match="cannot open state database"):
        StateDb(tmp_path / "junk.db")
