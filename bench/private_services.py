"""A private RabbitMQ node and a private Redis for a benchmark run.

Benchmarks must not share the test services other people's tests use (their load would
be in our figures, ours in their timings), so each invocation starts its own on free
loopback ports under a temporary directory and stops them at the end.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
RABBITMQ_DIAGNOSTICS = "/usr/lib/rabbitmq/bin/rabbitmq-diagnostics"
RABBITMQ_CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True when something accepts connections on the loopback port."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Services:
    """Where the private services listen."""

    amqp_url: str
    redis_url: str


def _rabbit_env(base: Path, node: str, port: int, dist: int) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(base),  # the Erlang cookie lives here
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),
    }


@contextlib.contextmanager
def private_rabbitmq(base: Path) -> Iterator[str]:
    """A RabbitMQ node of our own; yields its AMQP URL."""
    base.mkdir(parents=True, exist_ok=True)
    port, dist = free_port(), free_port()
    node = f"bench{os.getpid()}@localhost"
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n"
        "vm_memory_high_watermark.relative = 0.4\ndisk_free_limit.absolute = 200MB\n"
        "log.console = false\nlog.file.level = warning\n"
    )
    (base / "enabled_plugins").write_text("[].\n")
    env = _rabbit_env(base, node, port, dist)
    log = (base / "stdout.log").open("w")
    proc = subprocess.Popen(
        [RABBITMQ_SERVER], env=env, cwd=base, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {base / 'stdout.log'}")
            ping = subprocess.run(
                [RABBITMQ_DIAGNOSTICS, "-q", "-n", node, "ping"], env=env, capture_output=True
            )
            if ping.returncode == 0 and port_open(port):  # the node answers before AMQP
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq did not start; see {base}")
            time.sleep(1)
        yield f"amqp://guest:guest@127.0.0.1:{port}/"
    finally:
        subprocess.run([RABBITMQ_CTL, "-q", "-n", node, "stop"], env=env, capture_output=True)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def private_redis(base: Path) -> Iterator[str]:
    """A Redis server of our own (no persistence); yields its URL."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(base)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True
            ).stdout.strip()
            != b"PONG"
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def private_services() -> Iterator[Services]:
    """Both services, in a temporary directory removed afterwards."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="codebus-bench-")))
        redis_url = stack.enter_context(private_redis(tmp / "redis"))
        amqp_url = stack.enter_context(private_rabbitmq(tmp / "rabbitmq"))
        yield Services(amqp_url, redis_url)
