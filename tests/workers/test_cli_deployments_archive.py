"""``codebus deployments show/why`` read a finished flow from the deployment repository
(moto's S3 server) once Redis has let it go, and say so when neither has it."""

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
from schemas.workflows import FlowRecord
from tests.conftest import REDIS_URL
from tests.helpers import moto_server
from tools.adapters.s3_storage import S3Config, S3StorageServer
from workers.cli import cli
from workers.toolbox import ToolsFile, build_toolbox, guard_config

pytestmark = [pytest.mark.timeout(60), pytest.mark.redis]

KEY_ID, SECRET = "AKIDTESTING", "moto-secret-not-real"
EVIDENCE = "analysis error-rate failed: error_rate 0.071 > 0.05; failed 2 > failure_limit 1"


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


async def test_show_and_why_fall_back_to_the_repository(
    redis_client: Any, names: Names, tmp_path: Path
) -> None:
    with moto_server() as endpoint:
        s3_config = {
            "endpoint_url": endpoint,
            "access_key_id": KEY_ID,
            "secret_access_key": SECRET,
            "addressing_style": "path",
        }
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        ).create_bucket(Bucket="codebus-runs")
        tools_file = tmp_path / "tools.yaml"
        tools_file.write_text(yaml.safe_dump({"s3_storage": s3_config}))
        record = FlowRecord(
            id="dep-archived-1",
            kind="deployment",
            rev=7,
            app="api",
            environment="production",
            version="1.1",
            strategy="canary",
            phase="rolled_back",
            terminal=True,
            reason="analysis failed",
            evidence=EVIDENCE,
            created_at=1.0,
            updated_at=2.0,
        )
        server = S3StorageServer(S3Config.model_validate(s3_config))
        toolbox = build_toolbox([server], redis_client, names, guard_config(ToolsFile()), "test")
        await toolbox.start()
        try:
            repo = S3Repository(toolbox.as_role("deploy"), "codebus-runs")
            assert await repo.save(record)
        finally:
            await toolbox.close()
        env = {
            "CODEBUS_REDIS_URL": REDIS_URL,
            "CODEBUS_PREFIX": names.prefix,
            "CODEBUS_FLOWS_BUCKET": "codebus-runs",
            "CODEBUS_TOOLS_CONFIG": str(tools_file),
        }
        why = await asyncio.to_thread(invoke, ["deployments", "why", record.id], env)
        assert why.exit_code == 0, why.output
        assert why.output.strip() == EVIDENCE
        shown = await asyncio.to_thread(invoke, ["deployments", "show", record.id, "--json"], env)
        data = json.loads(shown.output)
        assert (data["source"], data["phase"], data["strategy"]) == (
            "repository",
            "rolled_back",
            "canary",
        )
        missing = await asyncio.to_thread(invoke, ["deployments", "why", "dep-nope"], env)
        assert missing.exit_code != 0
        assert "no deployment flow 'dep-nope' in Redis or the repository" in missing.output
