"""The backend session's TLS material: the OEM private PKI's CA bundle, our client cert and key.

Files are loaded into an :class:`ssl.SSLContext` once at start-up so a wrong path, a key
that does not match its certificate or a non-PEM file stops the daemon with a message
naming the file, instead of surfacing later as an obscure handshake error.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import ConfigurationError

if TYPE_CHECKING:
    import requests


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path | None
    key_file: Path | None

    def check(self, source: str | None = None, section: str = "dmclient.backend") -> None:
        """Load every file once; ConfigurationError naming the file, the config key and the reason."""
        # a bare context: create_default_context() would also parse the system's CA store (~1 MiB
        # resident, for nothing: only the OEM CA is trusted, by the session's own verify=ca_file)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            ctx.load_verify_locations(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as e:
            raise ConfigurationError(f"cannot load CA bundle {self.ca_file}: {_why(e)}",
                                     source=source, key=f"{section}.ca_file") from e
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigurationError("client certificate and key must be given together",
                                     source=source, key=section)
        if self.cert_file is not None and self.key_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (OSError, ssl.SSLError) as e:
                raise ConfigurationError(
                    f"cannot load client certificate {self.cert_file} with key {self.key_file}: {_why(e)}",
                    source=source, key=f"{section}.cert_file") from e


def _why(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def build_session(tls: TlsFiles, *, pool_size: int) -> requests.Session:
    """A requests session presenting our client certificate and trusting only the OEM CA.

    No transport-level retries (the download loop retries with resume); ``identity``
    encoding so byte offsets are those of the file; at most 5 redirects. requests (and
    urllib3, charset_normalizer: ~7 MiB) is imported here, on the first download or check,
    not when the daemon starts.
    """
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.verify = str(tls.ca_file)
    if tls.cert_file is not None and tls.key_file is not None:
        session.cert = (str(tls.cert_file), str(tls.key_file))
    session.headers["Accept-Encoding"] = "identity"
    session.headers["User-Agent"] = "ota-dmclient"
    session.max_redirects = 5
    session.trust_env = False  # no proxies or netrc from the environment on the vehicle
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
