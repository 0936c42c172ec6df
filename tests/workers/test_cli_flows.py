"""``codebus flows`` from a shell: validation names the field; a run started by the CLI
on RabbitMQ is listed and shown; once Redis has let it go, ``show`` reads it from S3."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner, Result

from flows.repository_s3 import S3Repository
from schemas.names import Names
from tests.conftest import AMQP_URL, REDIS_URL
from tests.flows.pipeline_support import running_workflows
from tests.helpers import moto_server
from tools.adapters.s3_storage import S3StorageServer
from workers.cli import cli

pytestmark = [pytest.mark.timeout(90), pytest.mark.redis]

KEY_ID, SECRET = "AKIDTESTING", "moto-secret-not-real"

SPEC = {
    "kind": "saga",
    "name": "cli-saga",
    "inputs": ["app"],
    "steps": [
        {
            "name": "one",
            "tool": "ops.do",
            "args": {"key": "one", "value": "${app}"},
            "compensate": {"tool": "ops.undo", "args": {"key": "one"}},
        },
        {"name": "two", "tool": "ops.do", "args": {"key": "two"}},
    ],
}


def invoke(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env or {}, catch_exceptions=False)


def test_a_bad_file_is_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = dict(SPEC, steps=[dict(SPEC["steps"][0], tool="ops")])  # type: ignore[call-overload]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = invoke(["flows", "run", str(path)])
    assert result.exit_code == 2
    assert f"invalid workflow {path}: steps.0.tool" in result.output
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(SPEC))
    result = invoke(["flows", "run", str(good), "--data", "{}"])
    assert result.exit_code == 2 and "--data: data.app: required by saga cli-saga" in result.output
    result = invoke(["flows", "run", str(good), "--data", "[1]"])
    assert result.exit_code == 2 and "--data must be a JSON object" in result.output


async def test_run_list_show_and_show_after_redis_let_go(
    redis_client: Any, names: Names, tmp_path: Path
) -> None:
    spec_file = tmp_path / "saga.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    with moto_server() as endpoint:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )
        client.create_bucket(Bucket="codebus-runs")
        s3_config = {
            "endpoint_url": endpoint,
            "access_key_id": KEY_ID,
            "secret_access_key": SECRET,
            "addressing_style": "path",
        }
        tools_file = tmp_path / "tools.yaml"
        tools_file.write_text(yaml.safe_dump({"s3_storage": s3_config}))
        env = {
            "CODEBUS_AMQP_URL": AMQP_URL,
            "CODEBUS_REDIS_URL": REDIS_URL,
            "CODEBUS_PREFIX": names.prefix,
            "CODEBUS_FLOWS_BUCKET": "codebus-runs",
            "CODEBUS_TOOLS_CONFIG": str(tools_file),
        }
        s3 = S3StorageServer(_s3(s3_config))
        async with running_workflows(
            "rabbitmq",
            redis_client,
            names,
            (s3,),
            repo=lambda tools: S3Repository(tools, "codebus-runs"),
        ) as unit:
            unit.ops.broken.add("do:two")
            ran = await asyncio.to_thread(
                invoke, ["flows", "run", str(spec_file), "--data", '{"app": "web"}'], env
            )
            assert ran.exit_code == 0, ran.output
            flow_id = ran.output.strip()
            assert flow_id.startswith("saga-")
            await unit.until_phase(flow_id, "compensated")

            listed = await asyncio.to_thread(invoke, ["flows", "list", "--json"], env)
            rows = json.loads(listed.output)
            assert [(r["id"], r["phase"], r["source"]) for r in rows] == [
                (flow_id, "compensated", "redis")
            ]
            shown = await asyncio.to_thread(invoke, ["flows", "show", flow_id], env)
            assert "phase compensated  (from redis)" in shown.output
            assert "failed step: two (#1, 1 tries): ops.do: do:two: broken" in shown.output
            assert "undo one" in shown.output and "done" in shown.output

            # Redis lets the run go (retention); the repository still answers.
            await redis_client.delete(names.workflow_key(flow_id))
            shown = await asyncio.to_thread(invoke, ["flows", "show", flow_id, "--json"], env)
            assert shown.exit_code == 0, shown.output
            data = json.loads(shown.output)
            assert (data["source"], data["phase"], data["kind"]) == (
                "repository",
                "compensated",
                "saga",
            )
            assert data["detail"]["failed_step"]["step"] == "two"
            kinds = [e["kind"] for e in data["journal"]]
            assert kinds.count("intent") == 3 and "compensated" in kinds
            listed = await asyncio.to_thread(invoke, ["flows", "list", "--json"], env)
            assert [(r["id"], r["source"]) for r in json.loads(listed.output)] == [
                (flow_id, "repository")
            ]

            rejected = await asyncio.to_thread(invoke, ["flows", "compensate", flow_id], env)
            assert rejected.exit_code == 0
            (why,) = await unit.wait_for(lambda: unit.of_type("workflow.command_rejected"))
            assert f"no pipeline or saga run {flow_id!r}" in why.data["why"]
        client.close()


def _s3(values: dict[str, Any]) -> Any:
    from tools.adapters.s3_storage import S3Config

    return S3Config.model_validate(values)
