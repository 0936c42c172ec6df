"""A RabbitMQ node of the test's own, for faults that must never touch the shared node
(memory alarms here): free loopback ports, state under the test's tmp dir, stopped and
killed at the end. Shaped like ``scripts/services.sh``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.helpers import free_port

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


class PrivateRabbit:
    """``start()``, ``ctl(...)``, ``set_memory_alarm(on)``, ``stop()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"gw{self.port}@localhost"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        for sub in ("home", "mnesia", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "vm_memory_high_watermark.relative = 0.4\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (root / "enabled_plugins").write_text("[].\n")

    def env(self) -> dict[str, str]:
        """The environment of the node and of its CLI tools (the cookie is in HOME)."""
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
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbit.pid"),
            "ERL_CRASH_DUMP": str(self.root / "erl_crash.dump"),
        }

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run a RabbitMQ CLI tool against this node; its standard output."""
        out = subprocess.run(
            [str(RABBIT_BIN / tool), "-q", "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if out.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)}: {out.stderr.strip() or out.stdout}")
        return out.stdout

    def start(self, timeout: float = 120) -> None:
        """Boot the node and wait until it answers."""
        self.proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env(),
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("check_port_connectivity", tool="rabbitmq-diagnostics", timeout=30)
                return
            except (RuntimeError, subprocess.TimeoutExpired):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"node {self.node} did not start; see {self.root}/log"
                    ) from None
                time.sleep(0.5)

    def set_memory_alarm(self, on: bool) -> None:
        """Raise (a watermark far below use) or clear the node's memory alarm; returns
        once the node reports the new state."""
        self.ctl("set_vm_memory_high_watermark", "0.00001" if on else "0.4")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alarms = self.ctl("eval", "rabbit_alarm:get_alarms().")
            if ("memory" in alarms) == on:
                return
            time.sleep(0.2)
        raise RuntimeError(f"memory alarm did not turn {'on' if on else 'off'}")

    def stop(self) -> None:
        """Stop the node for good; kill it if it does not stop."""
        if self.proc is None:
            return
        try:
            self.ctl("stop", timeout=30)
            self.proc.wait(timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
