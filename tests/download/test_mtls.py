"""Mutual TLS refusals: each side refuses a peer outside the OEM PKI, with a clear error."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.errors import ConfigurationError, TransportError
from bench.pki import BenchPki
from dmclient.control import TransferControl
from dmclient.digests import Hashes
from dmclient.errors import TlsRefusedError, UntrustedServerError
from dmclient.fetcher import RequestsFetcher
from dmclient.retry import RetryPolicy
from dmclient.state import StateDb
from dmclient.tls import TlsFiles, build_session
from dmclient.transfer import Blob, ResumableTransfer

from .conftest import Backend, payload


def fetcher(tls: TlsFiles) -> RequestsFetcher:
    return RequestsFetcher(build_session(tls, pool_size=1), connect_timeout=5, read_timeout=5)


def fetch_all(f: RequestsFetcher, url: str) -> bytes:
    with f.fetch(url) as resp:
        return b"".join(resp.chunks())


@pytest.fixture(scope="module")
def rogue_backend(tmp_path_factory: pytest.TempPathFactory, pki: BenchPki) -> Iterator[Backend]:
    """A backend whose server certificate comes from an unrelated CA."""
    be = Backend(tmp_path_factory.mktemp("rogue"), pki, cert=pki.rogue_server_cert, key=pki.rogue_server_key)
    yield be
    be.stop()


def test_good_pair_works(backend: Backend, pki: BenchPki) -> None:
    f = backend.put("mtls-ok.bin", payload(5000, 31))
    assert fetch_all(fetcher(TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key)), f.url) == f.data


def test_server_certificate_from_another_ca_is_not_trusted(rogue_backend: Backend, pki: BenchPki) -> None:
    f = rogue_backend.put("x.bin", b"secret")
    with pytest.raises(UntrustedServerError, match="not trusted by the configured CA bundle"):
        fetch_all(fetcher(TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key)), f.url)
    assert rogue_backend.stats("x.bin")["requests"] == []  # nothing was asked of it


def test_missing_client_certificate_is_refused_by_the_backend(backend: Backend, pki: BenchPki) -> None:
    f = backend.put("mtls-nocert.bin", b"secret")
    with pytest.raises(TransportError, match="client certificate"):
        fetch_all(fetcher(TlsFiles(pki.ca_cert, None, None)), f.url)
    assert backend.stats(f.name)["requests"] == []  # refused before any HTTP request was seen


def test_client_certificate_from_another_ca_is_refused_by_the_backend(backend: Backend, pki: BenchPki) -> None:
    f = backend.put("mtls-rogue-client.bin", b"secret")
    with pytest.raises(TransportError, match="client certificate"):
        fetch_all(fetcher(TlsFiles(pki.ca_cert, pki.rogue_client_cert, pki.rogue_client_key)), f.url)
    assert backend.stats(f.name)["requests"] == []


@pytest.fixture
def alerting_server(pki: BenchPki) -> Iterator[str]:
    """A blocking stdlib TLS server requiring client certs: unlike asyncio servers it sends the TLS alert."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.load_verify_locations(pki.ca_cert)
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            tls_conn = ctx.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
            try:
                tls_conn.do_handshake()
                tls_conn.recv(4096)
                tls_conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (OSError, ssl.SSLError):
                # the alert is on its way: half-close and drain (as plain socket once the TLS
                # layer is dropped), so the client's request bytes do not turn our close into
                # a reset that would discard the alert before the client reads it
                with contextlib.suppress(OSError, ssl.SSLError):
                    tls_conn.shutdown(socket.SHUT_WR)
                    tls_conn.settimeout(5)
                    while tls_conn.recv(4096):
                        pass
            finally:
                tls_conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{srv.getsockname()[1]}/x"
    stop.set()
    srv.close()
    thread.join(10)


def test_tls_alert_for_a_foreign_client_certificate_is_a_refusal_not_retried(
        alerting_server: str, pki: BenchPki, tmp_path: Path) -> None:
    sleeps: list[float] = []
    t = ResumableTransfer(Blob(alerting_server, 2, Hashes(hashlib.sha256(b"ok").hexdigest())), tmp_path / "p.part",
                          db=StateDb(tmp_path / "s.db"),
                          fetcher=fetcher(TlsFiles(pki.ca_cert, pki.rogue_client_cert, pki.rogue_client_key)),
                          policy=RetryPolicy(max_attempts=5), checkpoint_bytes=1024,
                          control=TransferControl(sleep=sleeps.append))
    with pytest.raises(TlsRefusedError, match=r"server refused the TLS handshake .*UNKNOWN_CA"):
        t.run()
    assert sleeps == []
    ok = fetcher(TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key))
    assert fetch_all(ok, alerting_server) == b"ok"


def test_tls_files_are_checked_at_start(pki: BenchPki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot load CA bundle"):
        TlsFiles(tmp_path / "nope.pem", None, None).check("dmclient.yaml")
    with pytest.raises(ConfigurationError, match="cannot load client certificate"):
        TlsFiles(pki.ca_cert, pki.client_cert, pki.server_key).check("dmclient.yaml")  # key of another cert
    with pytest.raises(ConfigurationError, match="given together"):
        TlsFiles(pki.ca_cert, pki.client_cert, None).check("dmclient.yaml")
    TlsFiles(pki.ca_cert, pki.client_cert, pki.client_key).check("dmclient.yaml")
