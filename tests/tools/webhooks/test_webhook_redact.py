"""Redaction of subscription URLs and of error texts that may quote them."""

from __future__ import annotations

import pytest

from tools.webhooks.redact import redact_url, redact_urls_in, scrub


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://rx.example/hook", "https://rx.example/hook"),
        (
            "https://u:pw@rx.example:8443/h?token=abc#frag",
            "https://***@rx.example:8443/h?token=***",
        ),
        ("https://tok3n@rx.example/h", "https://***@rx.example/h"),
        (
            "https://hooks.slack.com/services/T0AAAA1/B0BBBB2/abcdEFGH1234ijklMNOP5678",
            "https://hooks.slack.com/services/T0AAAA1/B0BBBB2/***",
        ),
        ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]:8080/x"),
        ("https://a\\@b/", "(unparseable URL)"),
    ],
)
def test_redact_url(url, shown) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown or shown == "(unparseable URL)"  # idempotent


def test_scrub_masks_credentials_anywhere_in_the_text() -> None:
    url = "https://bob:s3cret-pw@rx.example/h?sig=AbC%2Bdef"
    text = f"POST {url} failed; auth s3cret-pw rejected; sig AbC+def; see {url}"
    out = scrub(text, url)
    assert "s3cret-pw" not in out and "AbC" not in out and "bob" not in out
    assert "https://***@rx.example/h?sig=***" in out


def test_urls_in_free_text_are_redacted() -> None:
    text = "old error: https://u:p4ss@rx.example/h?k=v answered 401"
    assert redact_urls_in(text) == "old error: https://***@rx.example/h?k=*** answered 401"
