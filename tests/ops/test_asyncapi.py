"""The AsyncAPI 3.0 catalogue: built from the live event registry, accepted by the
official parser (npm ``@asyncapi/parser``), and its message schemas accept real events
and refuse bad ones."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bus.abc import CONTENT_TYPE
from schemas.asyncapi import CONTENT_TYPE as DOC_CONTENT_TYPE
from schemas.asyncapi import build_asyncapi
from schemas.envelope import new_event
from schemas.events import EVENT_TYPES, Payload
from schemas.names import Names
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
PARSER_DIR = Path(os.environ.get("CODEBUS_ASYNCAPI_PARSER_DIR", ROOT / ".services" / "asyncapi"))
VALIDATE = Path(__file__).with_name("asyncapi_validate.cjs")


def parser() -> tuple[str, Path]:
    """node and the parser's install directory; skip locally, fail in CI when absent."""
    node = shutil.which("node")
    installed = (PARSER_DIR / "node_modules" / "@asyncapi" / "parser").is_dir()
    if node is None or not installed:
        msg = f"node or @asyncapi/parser missing (in {PARSER_DIR}); scripts/test.sh installs them"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return node, PARSER_DIR


def validate(*texts: str, tmp: Path) -> list[dict[str, Any]]:
    """The parser's verdict on each document (one node process for all of them)."""
    node, where = parser()
    files = []
    for i, text in enumerate(texts):
        files.append(tmp / f"doc{i}.yaml")
        files[-1].write_text(text)
    out = subprocess.run(
        [node, str(VALIDATE), str(where), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def message_validator(doc: dict[str, Any], type_: str) -> jsonschema.Draft202012Validator:
    """A validator of one message's payload, resolving refs against the document."""
    schema = {**doc["components"]["messages"][type_]["payload"], "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_cli_document_passes_the_asyncapi_parser_and_a_broken_one_does_not(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from workers.cli import main; main()", "asyncapi"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CODEBUS_AMQP_URL": "amqp://u:hunter2@mq.internal:5671/"},
    )
    assert out.returncode == 0, out.stderr
    assert "hunter2" not in out.stdout and "mq.internal:5671" in out.stdout
    broken = build_asyncapi(version="1.0.0")
    broken["operations"]["publish.deployment.requested"]["channel"] = {"$ref": "#/channels/nope"}
    cli_doc, broken_doc = validate(out.stdout, json.dumps(broken), tmp=tmp_path)
    assert cli_doc["valid"], cli_doc["diagnostics"]
    assert (cli_doc["channels"], cli_doc["messages"]) == (len(EVENT_TYPES), len(EVENT_TYPES))
    assert not broken_doc["valid"], "the parser accepted a dangling channel reference"


def test_channels_follow_the_registry_and_the_prefix(monkeypatch) -> None:
    class CanaryPaused(Payload):
        """A type registered at run time (a flow or a user extension)."""

        app: str
        weight: int

    monkeypatch.setitem(EVENT_TYPES, "rollout.canary_paused", CanaryPaused)
    doc = build_asyncapi(version="1.0.0", names=Names(prefix="acme"))
    assert {c["address"] for c in doc["channels"].values()} == set(EVENT_TYPES)
    channel = doc["channels"]["rollout.canary_paused"]
    assert channel["bindings"]["amqp"]["exchange"]["name"] == "acme.events"
    assert doc["defaultContentType"] == CONTENT_TYPE == DOC_CONTENT_TYPE
    check = message_validator(doc, "rollout.canary_paused")
    good = new_event("rollout.canary_paused", {"app": "web", "weight": 20}, source="t")
    check.validate(json.loads(good.to_json()))
    assert not check.is_valid({**json.loads(good.to_json()), "data": {"app": "web"}})


@pytest.mark.parametrize("type_", sorted(EVENT_TYPES))
def test_message_schema_matches_the_payload_model(type_: str) -> None:
    doc = build_asyncapi(version="1.0.0")
    check = message_validator(doc, type_)
    wire = json.loads(new_event(type_, {}, source="t").to_json())
    wire["data"] = {"unexpected_field": 1}
    assert not check.is_valid(wire), "closed payload models must refuse unknown fields"
    wire["type"] = "some.other_type"
    assert any(list(e.path) == ["type"] for e in check.iter_errors(wire))
