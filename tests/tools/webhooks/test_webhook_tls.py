"""Pinned connections keep TLS honest: SNI and certificate verification use the URL's
host name, although the socket goes to the vetted address."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from schemas.envelope import new_event
from schemas.gateway_config import OutboundSubscription
from tools.webhooks.delivery import WebhookSender, WebhookTransientError

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"tls-receiver-secret-012345").decode()


def _name(cn: str) -> Any:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(tmp_path) -> tuple[bytes, str, str]:
    """A throwaway CA and a leaf certificate for ``receiver.test``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test ca"))
        .issuer_name(_name("test ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("receiver.test"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("receiver.test")]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), str(cert_file), str(key_file)


@pytest.fixture
async def tls_receiver(tmp_path) -> AsyncIterator[tuple[int, ssl.SSLContext, list[Any]]]:
    ca_pem, cert_file, key_file = make_pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_file, key_file)
    seen: list[Any] = []  # SNI names the server saw, then request Host headers

    def on_sni(sock: Any, server_name: str | None, ctx: Any) -> None:
        seen.append(("sni", server_name))

    server_ctx.sni_callback = on_sni

    async def handle(request: web.Request) -> web.Response:
        seen.append(("host", request.headers.get("Host")))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server(ssl=server_ctx)
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    yield server.port, client_ctx, seen
    await server.close()


async def to_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def _sub(url: str) -> OutboundSubscription:
    return OutboundSubscription(name="tls", url=url, patterns=["#"], secret=SECRET)


async def test_sni_and_certificate_use_the_host_name(tls_receiver) -> None:
    port, client_ctx, seen = tls_receiver
    sender = WebhookSender(
        allowed_cidrs=[ipaddress.ip_network("127.0.0.1/32")],
        resolve=to_loopback,
        ssl_context=client_ctx,
    )
    event = new_event("deployment.completed", {"app": "a", "version": "1"}, source="t")
    result = await sender.deliver(_sub(f"https://receiver.test:{port}/hook"), event)
    assert result.status == 204
    assert ("sni", "receiver.test") in seen
    assert ("host", f"receiver.test:{port}") in seen


async def test_certificate_for_another_name_is_refused(tls_receiver) -> None:
    port, client_ctx, seen = tls_receiver
    sender = WebhookSender(
        allowed_cidrs=[ipaddress.ip_network("127.0.0.1/32")],
        resolve=to_loopback,
        ssl_context=client_ctx,
    )
    event = new_event("deployment.completed", {"app": "a", "version": "1"}, source="t")
    with pytest.raises(WebhookTransientError, match="Certificate"):
        await sender.deliver(_sub(f"https://impostor.test:{port}/hook"), event)
    assert not any(kind == "host" for kind, _ in seen)
