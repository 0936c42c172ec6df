"""A real worker process's ``/metrics``: the tool, breaker, cache, consumer, process and
Python series are there after a deployment ran, and ``promtool check metrics`` accepts
every name (no lint problems)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import IN_CI
from tests.workers.test_cli import _inspect_and_clean, run


def promtool() -> str:
    """The promtool binary (Debian ``prometheus``); skip locally, fail in CI."""
    path = shutil.which("promtool")
    if path is None:
        msg = "promtool not on PATH; scripts/services.sh install brings the prometheus package"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return str(r.read().decode())
    except OSError:
        return None


EXPECTED = (
    "codebus_tool_calls_total{",
    "codebus_tool_call_seconds_bucket{",
    "codebus_tool_breaker_state{",
    "codebus_tool_cache_requests_total",
    "codebus_webhook_deliveries_total",
    "codebus_events_processed_total{",
    "codebus_event_processing_seconds_bucket{",
    "process_resident_memory_bytes ",
    "python_info{",
    "python_gc_objects_collected_total{",
)


MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1"}]
"""


async def test_worker_metrics_pass_promtool(
    amqp_url, redis_url, redis_client, names, tmp_path
) -> None:
    # redis_client: deletes this test's keys (the deployment's workflow, audit) afterwards
    tool = promtool()
    port = free_port()
    # The deployment flow's default policy: manifests under ./k8s/<app> of the worker's cwd.
    (tmp_path / "k8s" / "web").mkdir(parents=True)
    (tmp_path / "k8s" / "web" / "deployment.yaml").write_text(MANIFEST)
    env = {
        **os.environ,
        "CODEBUS_AMQP_URL": amqp_url,
        "CODEBUS_REDIS_URL": redis_url,
        "CODEBUS_PREFIX": names.prefix,
        "CODEBUS_FAKE_TOOLS": "true",
        "CODEBUS_HTTP_HOST": "127.0.0.1",
        "CODEBUS_HTTP_PORT": str(port),
    }
    bus_env = {k: env[k] for k in ("CODEBUS_AMQP_URL", "CODEBUS_PREFIX")}
    # Every unit's queues, so that the events the deployment publishes are routable.
    declared = await asyncio.to_thread(run, "topology", "--declare", env=bus_env)
    assert declared.returncode == 0, declared.stderr
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from workers.cli import main; main()",
        "worker",
        "deploy",
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(150):
            if await asyncio.to_thread(scrape, port) is not None:
                break
            await asyncio.sleep(0.1)
        published = await asyncio.to_thread(
            run,
            "publish",
            "deployment.requested",
            "--data",
            '{"app": "web", "version": "1", "image": "web:1", "context_path": "."}',
            env=bus_env,
        )
        assert published.returncode == 0, published.stderr
        text = ""
        for _ in range(150):  # until the deployment settled: tool calls and a done event
            text = await asyncio.to_thread(scrape, port) or ""
            if "codebus_tool_calls_total{" in text and 'outcome="done"' in text:
                break
            await asyncio.sleep(0.1)
        missing = [name for name in EXPECTED if name not in text]
        assert not missing, f"series missing from the worker's /metrics: {missing}\n{text}"
        check = await asyncio.to_thread(
            subprocess.run,
            [tool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (check.returncode, check.stdout + check.stderr) == (0, "")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await _inspect_and_clean(amqp_url, names)
