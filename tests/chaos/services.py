"""Private RabbitMQ nodes and Redis servers for fault-injection tests.

Faults (kill -9, stop_app, SIGSTOP, memory alarms) are only ever injected into
instances started here, on free loopback ports, with their state under the test's
temporary directory: the shared services other tests use are never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
RECOMMENDED_ADVANCED_CONFIG = (
    "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}].\n"
)


class PrivateRabbit:
    """One RabbitMQ node of our own: ``start()``, ``kill()`` (SIGKILL of the Erlang VM),
    ``stop_app()`` / ``start_app()``, ``set_memory_alarm(on)``, ``ctl(...)`` and ``stop()``."""

    def __init__(
        self,
        root: Path,
        *,
        extra_conf: str = "",
        advanced_config: str = RECOMMENDED_ADVANCED_CONFIG,
        group: int | None = None,
    ) -> None:
        self.root = root
        self.port = free_port()
        self.dist_port = free_port()
        self.group = group  # run the node under this gid (iptables owner match)
        self.node = f"chaos{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        (root / "home").mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "vm_memory_high_watermark.relative = 0.4\n"
            "disk_free_limit.absolute = 50MB\n"
            "heartbeat = 10\n"
            "log.console = false\n"
            "log.file.level = warning\n" + extra_conf
        )
        (root / "enabled_plugins").write_text("[].\n")
        # As docs/reliability.md recommends: the at-least-once dead-letter worker retries
        # parked messages after 5 s instead of 180 s.
        (root / "advanced.config").write_text(advanced_config)

    def env(self) -> dict[str, str]:
        """The environment the node and its CLI tools run with."""
        return {
            **os.environ,
            "HOME": str(self.root / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP": str(self.root / "erl_crash.dump"),
        }

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run a RabbitMQ CLI tool against this node; its output. Retried for a while
        when the CLI cannot reach the node yet (just after a boot)."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run(
                [str(RABBIT_BIN / tool), "-q", "-n", self.node, *args],
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if out.returncode == 0:
                return out.stdout
            error = out.stderr.strip() or out.stdout
            if "unable to perform an operation" not in error or time.monotonic() > deadline:
                raise RuntimeError(f"{tool} {' '.join(args)}: {error}")
            time.sleep(0.5)

    def _answers(self) -> bool:
        """The AMQP listener accepts connections (it opens last when the node boots).
        A socket, not the CLI: each CLI call costs a second or two of CPU."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 90) -> None:
        """Boot the node (fresh or on its existing state) and wait until AMQP answers."""
        self.boot()
        self._wait(timeout)

    def boot(self) -> None:
        """Start the node's process without waiting (see :meth:`wait_up`)."""
        self.proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env(),
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            group=self.group,
        )

    def wait_up(self, timeout: float = 90) -> None:
        """Wait until AMQP answers (after :meth:`boot`)."""
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._answers():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.root / 'log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.node} did not start; see {self.root / 'log'}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the whole node (Erlang VM and its helpers): a crash, no clean close."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop_app(self) -> None:
        """``rabbitmqctl stop_app``: the broker closes every connection, the VM stays."""
        self.ctl("stop_app")

    def start_app(self, timeout: float = 90) -> None:
        """``rabbitmqctl start_app`` and wait until AMQP answers again."""
        self.ctl("start_app", timeout=timeout)
        self._wait(timeout)

    def set_memory_alarm(self, on: bool) -> None:
        """Raise (a watermark far below use) or clear the node's memory alarm; returns
        once the node reports the new state (it checks its memory periodically)."""
        self.ctl("set_vm_memory_high_watermark", "0.000001" if on else "0.4")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ("memory" in self.ctl("eval", "rabbit_alarm:get_alarms().")) == on:
                return
            time.sleep(0.2)
        raise RuntimeError(f"memory alarm did not turn {'on' if on else 'off'}")

    def stop(self) -> None:
        """Stop the node for good (kill if it does not stop) and leave nothing behind."""
        if self.proc is None:
            return
        try:
            self.ctl("stop", timeout=30)
            self.proc.wait(timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            self.kill()
        self.proc = None


class PrivateRedis:
    """One redis-server of our own: ``start()``, ``kill()``, ``pause()`` / ``resume()``
    (SIGSTOP / SIGCONT: a hung server), ``stop()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 20) -> None:
        """Start (again, on the same port) and wait until it answers PING."""
        binary = shutil.which("redis-server") or "redis-server"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"private redis on {self.port} did not start")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the server vanishes (its append-only file keeps what was written)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop for good."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()


ROOT = Path(__file__).resolve().parents[2]


class ChaosWorker:
    """``tests.chaos.chaos_worker`` as a real process, with its health endpoint."""

    def __init__(
        self, amqp_url: str, redis_url: str, prefix: str, log: Path, concurrency: int = 32
    ) -> None:
        self.args = [amqp_url, redis_url, prefix]
        self.log = log  # the worker's output, for the post-mortem of a failed run
        self.concurrency = concurrency
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start and wait for its 'ready' line."""
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.chaos.chaos_worker",
                *self.args,
                str(self.port),
                str(self.concurrency),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"chaos worker did not start: {line}{self.proc.stdout.read()}")
        # Drain its output (into the log file) so it never blocks on a full pipe.
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()

    def _drain(self, stream: Any) -> None:
        with open(self.log, "a") as out:
            for line in stream:
                out.write(line)
                out.flush()

    def ready(self) -> tuple[int, str]:
        """Status and body of its /readyz (0 when it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=8) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def stop(self) -> int | None:
        """SIGTERM and wait (kill after 30 s); the exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
