"""SSRF defence: every internal target is refused before any connection is made."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from tools.webhooks.delivery import WebhookSender
from tools.webhooks.ssrf import (
    PinnedResolver,
    WebhookBlocked,
    blocked_reason,
    check_address,
    parse_ip,
    vet_url,
)

SECRET = "whsec_" + base64.b64encode(b"ssrf-table-secret-0123456").decode()

#: Names the fake resolver knows; everything else fails to resolve.
FAKE_DNS = {
    "evil.example": ["127.0.0.1"],
    "sneaky.example": ["93.184.216.34", "10.0.0.7"],  # one public, one private
    "metadata.example": ["169.254.169.254"],
    "v6local.example": ["::1"],
    "mapped.example": ["::ffff:192.168.1.1"],
    "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
}


async def fake_resolve(host: str, port: int) -> list[str]:
    if host not in FAKE_DNS:
        raise OSError(f"unknown host {host}")
    return FAKE_DNS[host]


REFUSED = [
    # IPv4 loopback in every spelling a socket accepts
    "http://127.0.0.1/",
    "http://127.255.255.254:8080/x",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://0x7f.1/",
    # IPv6 loopback, unspecified and embedded-IPv4 forms
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:7f00:1::]/",
    "http://[::ffff:169.254.169.254]/",
    # unspecified / this network
    "http://0.0.0.0/",
    "http://0/",
    # metadata endpoints
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://100.100.100.200/",
    # private, CGNAT, link-local, ULA, multicast, reserved, broadcast
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://169.254.1.1/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://[ff02::1]/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    # names resolving inside
    "http://localhost/",
    "http://evil.example/",
    "https://sneaky.example/",
    "http://metadata.example/",
    "http://v6local.example/",
    "http://mapped.example/",
    # schemes
    "ftp://93.184.216.34/",
    "file:///etc/passwd",
    "gopher://93.184.216.34/",
]


async def _resolve_with_localhost(host: str, port: int) -> list[str]:
    # "localhost" goes to the real resolver (whatever /etc/hosts says: loopback).
    if host == "localhost":
        from tools.webhooks.ssrf import system_resolve

        return await system_resolve(host, port)
    return await fake_resolve(host, port)


def test_table_is_large_enough() -> None:
    assert len(REFUSED) >= 30


@pytest.mark.parametrize("url", REFUSED)
async def test_internal_targets_are_refused(url: str) -> None:
    with pytest.raises(WebhookBlocked, match=r"refusing to connect|is not allowed"):
        await vet_url(url, resolve=_resolve_with_localhost)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1"),
        ("example.com", None),
        ("1e100.net", None),
    ],
)
def test_parse_ip_understands_legacy_spellings(host: str, expected: str | None) -> None:
    parsed = parse_ip(host)
    assert (None if parsed is None else str(parsed)) == expected


async def test_public_addresses_pass() -> None:
    target = await vet_url("https://public.example/hook", resolve=fake_resolve)
    assert [str(a) for a in target.addresses] == FAKE_DNS["public.example"]
    assert (target.host, target.port) == ("public.example", 443)
    assert blocked_reason(ipaddress.ip_address("8.8.8.8")) is None
    assert blocked_reason(ipaddress.ip_address("::ffff:8.8.8.8")) is None


async def test_allowlist_lifts_refusal_for_its_range_only() -> None:
    allowed = [ipaddress.ip_network("10.0.0.0/24")]
    target = await vet_url("http://10.0.0.5:9000/", allowed)
    assert str(target.addresses[0]) == "10.0.0.5"
    with pytest.raises(WebhookBlocked):
        await vet_url("http://10.0.1.5/", allowed)
    # sneaky.example has 10.0.0.7 (allowed) and a public address: fine now.
    await vet_url("http://sneaky.example/", allowed, resolve=fake_resolve)


def test_metadata_needs_an_exact_allowlist_entry() -> None:
    meta = ipaddress.ip_address("169.254.169.254")
    with pytest.raises(WebhookBlocked, match="metadata"):
        check_address(meta, [ipaddress.ip_network("169.254.0.0/16")])
    check_address(meta, [ipaddress.ip_network("169.254.169.254/32")])


async def test_unresolvable_name_is_an_os_error_not_a_block() -> None:
    with pytest.raises(OSError):
        await vet_url("http://nowhere.example/", resolve=fake_resolve)


async def test_pinned_resolver_answers_only_for_the_vetted_host() -> None:
    target = await vet_url("https://public.example/", resolve=fake_resolve)
    resolver = PinnedResolver(target)
    answers = await resolver.resolve("public.example", 443)
    assert [a["host"] for a in answers] == FAKE_DNS["public.example"]
    assert all(a["hostname"] == "public.example" for a in answers)
    with pytest.raises(OSError):
        await resolver.resolve("evil.example", 443)


@pytest.mark.parametrize("url", REFUSED)
async def test_the_sender_refuses_the_same_table(url: str) -> None:
    # Through the HTTP client too: refused before any connection, as a permanent error.
    sender = WebhookSender(resolve=_resolve_with_localhost, timeout=1)
    with pytest.raises(WebhookBlocked):
        await sender.send(url, SECRET, "msg_1", b"{}")
