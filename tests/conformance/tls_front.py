"""A TLS front on 127.0.0.1 for the Dataverse simulator.

Microsoft's Python client refuses plain http (``DataverseClient`` checks for ``https://``), and
azure-identity refuses an authority that is not https. This front terminates TLS with a
self-signed certificate made at start-up and forwards every request to the simulator's plain
http address, adding ``X-Forwarded-Proto: https`` so that the simulator writes links, OpenID
discovery and token resources with the https origin the client sees (``Host`` is passed on
unchanged). Clients trust the certificate through ``REQUESTS_CA_BUNDLE`` (requests, msal and
azure-core read it); nothing disables verification.

Only the standard library and ``cryptography`` (a dependency of azure-identity, pinned in
requirements.txt) are used.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import ipaddress
import os
import ssl
import tempfile
import threading
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Headers of one connection, not of the request (RFC 9110 §7.6.1).
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def make_certificate(directory: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost; returns (cert path, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dataverse sandbox TLS front")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = os.path.join(directory, "front.crt")
    key_path = os.path.join(directory, "front.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def setup(self) -> None:
        # The handshake runs here, in the connection's thread, not in the accept loop.
        self.request.do_handshake()
        super().setup()

    def _forward(self) -> None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.send_error(501, "chunked request bodies are not forwarded by the TLS front")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port, timeout=120)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "x-forwarded-proto":
                    upstream.putheader(name, value)
            upstream.putheader("X-Forwarded-Proto", "https")
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
        except OSError as e:
            self.send_error(502, f"the simulator did not answer: {e}")
            return
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _forward

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    upstream_host: str
    upstream_port: int

    def handle_error(self, request, client_address) -> None:
        # A client that drops a connection is not an error of the suite.
        pass


class TlsFront:
    """``with TlsFront("http://127.0.0.1:8801") as front:`` serves ``front.url`` (https)."""

    def __init__(self, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
            raise ValueError(f"the simulator URL must be http://host:port, not {upstream!r}")
        self._dir = tempfile.TemporaryDirectory(prefix="dataverse-tls-front-")
        self.ca_bundle, key = make_certificate(self._dir.name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.ca_bundle, key)
        self._server = _Server(("127.0.0.1", 0), _Forward)
        self._server.upstream_host = parsed.hostname
        self._server.upstream_port = parsed.port
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "TlsFront":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()
