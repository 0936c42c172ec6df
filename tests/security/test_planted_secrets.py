"""Attack table of redaction (issue 14, V8): planted secrets in free text, in error
messages and in tool results must not reach the audit, the caller's error or the logs.

Contexts, each counted per planted secret:

* ``text``: :func:`tools.redaction.redact_text` of the text itself;
* ``error``: a tool raises with the text in its message; the audit record, the error the
  caller catches, and a log line of that error with its traceback are checked;
* ``result``: a tool returns the text in its result; the audit record is checked;
* ``arguments``: the text is an argument of the call; the audit record is checked.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from tests.reports import report
from tests.security.secret_corpus import Planted, corpus
from tools.config import ToolboxConfig
from tools.errors import ToolFailed, ToolTransientError
from tools.guards.audit import AuditRecord
from tools.redaction import RedactingFilter, redact_text
from tools.spec import ToolServer, tool
from tools.toolbox import Toolbox

CORPUS = corpus()


class LeakArgs(BaseModel):
    """What the leaky tool does with ``text``."""

    text: str
    how: str = "result"


class LeakResult(BaseModel):
    """The text, back, in a field named like ordinary output."""

    stdout: str


class LeakyServer(ToolServer):
    """Puts whatever it is given into its result or its error message."""

    name = "leaky"

    @tool()
    async def leak(self, args: LeakArgs) -> LeakResult:
        """Echo ``text`` in the result, or raise with it (permanent, transient, chained)."""
        if args.how == "failed":
            raise ToolFailed(f"upstream answered 401: {args.text}", tool="leaky.leak")
        if args.how == "transient":
            raise ToolTransientError(f"retry later: {args.text}", tool="leaky.leak")
        if args.how == "chained":
            try:
                raise RuntimeError(f"client error: {args.text}")
            except RuntimeError as exc:
                raise ToolFailed("request failed", tool="leaky.leak") from exc
        return LeakResult(stdout=f"output follows\n{args.text}\n")


class MemorySink:
    """Keeps audit records as their JSON."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def write(self, record: AuditRecord) -> None:
        self.lines.append(record.model_dump_json())

    async def close(self) -> None:
        pass


def leaked(planted: Planted, text: str) -> bool:
    """Whether any secret of ``planted`` is in ``text``."""
    return any(secret in text for secret in planted.secrets)


def log_line(exc: BaseException) -> str:
    """What a worker's log shows for ``exc`` (message and traceback), filter applied."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.security.planted")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        try:
            raise exc
        except BaseException:
            logger.exception("tool call failed: %s", exc)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


async def measure() -> tuple[dict[str, int], list[str]]:
    """Leaks per context over the whole corpus, and which (context, kind) leaked."""
    sink = MemorySink()
    config = ToolboxConfig.model_validate(
        {"defaults": {"cache": False, "breaker": False, "retry_attempts": 1}}
    )
    counts = {"text": 0, "error": 0, "result": 0, "arguments": 0}
    where: list[str] = []
    async with Toolbox([LeakyServer()], config=config, audit_sinks=[sink]) as toolbox:
        for planted in CORPUS:
            if leaked(planted, redact_text(planted.text)):
                counts["text"] += 1
                where.append(f"text: {planted.kind}")
            for how in ("failed", "transient", "chained"):
                sink.lines.clear()
                seen = ""
                try:
                    await toolbox.call_tool("leaky.leak", {"text": planted.text, "how": how})
                except Exception as exc:  # the caller's view
                    seen = f"{exc}\n{log_line(exc)}"
                if leaked(planted, seen + "".join(sink.lines)):
                    counts["error"] += 1
                    where.append(f"error/{how}: {planted.kind}")
                    break
            sink.lines.clear()
            await toolbox.call_tool("leaky.leak", {"text": planted.text})
            if leaked(planted, "".join(sink.lines)):
                counts["result"] += 1
                where.append(f"result: {planted.kind}")
            # The same text as an argument: the audit record's arguments.
            if leaked(planted, sink.lines[0].split('"outcome"')[0]):
                counts["arguments"] += 1
                where.append(f"arguments: {planted.kind}")
    return counts, where


async def test_planted_secrets_never_leak() -> None:
    counts, where = await measure()
    kinds = len({p.kind for p in CORPUS})
    report(
        "security-planted-secrets",
        f"kinds={kinds} leaked_free_text={counts['text']} leaked_error_messages="
        f"{counts['error']} leaked_tool_results={counts['result']} "
        f"leaked_arguments={counts['arguments']}",
    )
    assert kinds >= 50
    assert where == []


def test_redaction_keeps_ordinary_text() -> None:
    """Over-masking has a cost too: everyday tool output stays readable."""
    samples = [
        "deployment web-7d9c6b5f4 rolled out to staging (3/3 ready)",
        "image sha256:" + "ab" * 32 + " pushed to registry.example.com/web:1.4.2",
        "commit 3f2a9c1d0e8b7a6f5e4d3c2b1a0f9e8d7c6b5a49 Merge branch 'main'",
        "https://example.com:8443/path?q=1&page=2#frag",
        "GET /api/v1/namespaces/staging/pods?labelSelector=app%3Dweb 200",
        "kubectl rollout status deployment/web --timeout=300s",
        "make test PYTHON=python3.11",
        "2026-11-25T17:00:00Z INFO worker started concurrency=16",
    ]
    for text in samples:
        assert redact_text(text) == text


@pytest.mark.parametrize("planted", CORPUS[:3], ids=lambda p: p.kind)
def test_redaction_is_idempotent_on_the_corpus(planted: Planted) -> None:
    once = redact_text(planted.text)
    assert redact_text(once) == once


def test_worker_logging_installs_the_redacting_filter(capsys: Any) -> None:
    from workers import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("INFO", "json")
        secret = "ghp_" + "A1b2C3d4" * 4 + "Zz9Y"
        try:
            raise RuntimeError(f"push failed with {secret}")
        except RuntimeError:
            logging.getLogger("tests.security").exception("oops %s", secret)
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert secret not in json.dumps(line)
        assert "push failed" in line["exception"]
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
