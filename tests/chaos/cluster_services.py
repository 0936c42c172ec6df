"""A private three-node RabbitMQ cluster and a private Redis primary/replica under
three Sentinels, on loopback, for the cluster and failover chaos tests.

Partition: the last node of the cluster runs under a group id of its own. An iptables
chain (ours alone, hooked into OUTPUT) marks every connection that node takes part in
(``-m owner --gid-owner`` + CONNMARK); :meth:`RabbitCluster.partition` drops the marked
connections' packets on the Erlang distribution ports, which cuts that node from the
other two (and from CLI calls to it) while AMQP to every node keeps working. Network
namespaces would need the node names to resolve to another address and epmd to listen
there; the owner match gives the same cut on loopback without that.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from tests.chaos.services import RECOMMENDED_ADVANCED_CONFIG, PrivateRabbit
from tests.helpers import free_port

#: pause_minority: the partitioned node pauses (closes client connections) and resumes
#: after the heal, as RabbitMQ recommends for three nodes. A short net_ticktime so a cut
#: is noticed in ~10 s rather than ~60 s.
CLUSTER_CONF = "cluster_partition_handling = pause_minority\n"
CLUSTER_ADVANCED = (
    RECOMMENDED_ADVANCED_CONFIG.rstrip().removesuffix("].")
    + ",\n {kernel, [{net_ticktime, 10}]}].\n"
)


def _iptables(*args: str, check: bool = True) -> bool:
    out = subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"iptables {' '.join(args)}: {out.stderr.strip()}")
    return out.returncode == 0


class RabbitCluster:
    """Three :class:`PrivateRabbit` nodes joined into one cluster."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.group = 40000 + os.getpid() % 20000  # gid of the partitionable (last) node
        self.mark = hex(0x5A0000 + os.getpid() % 0xFFFF)
        self.chain = f"CBCHAOS{os.getpid()}"
        self.nodes = [
            PrivateRabbit(
                root / f"node{i}",
                extra_conf=CLUSTER_CONF,
                advanced_config=CLUSTER_ADVANCED,
                group=self.group if i == size - 1 else None,
            )
            for i in range(size)
        ]
        cookie = secrets.token_hex(16)
        for node in self.nodes:
            path = node.root / "home" / ".erlang.cookie"
            path.write_text(cookie)
            path.chmod(0o400)
        self._chain_made = False

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def url_list(self, first: int = 0) -> str:
        """``CODEBUS_AMQP_URL`` for the cluster, starting with node ``first``."""
        urls = self.urls
        return ",".join(urls[first:] + urls[:first])

    def start(self, timeout: float = 180) -> None:
        """Boot the nodes together, join nodes 1.. to node 0, hook the iptables chain."""
        for node in self.nodes:
            node.boot()
        for node in self.nodes:
            node.wait_up(timeout)
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", self.nodes[0].node)
            node.start_app(timeout)
        running = self.nodes[0].ctl("eval", "length(rabbit_nodes:all_running()).")
        if running.strip() != str(len(self.nodes)):
            raise RuntimeError(f"cluster has {running.strip()} running nodes")
        self._hook()

    def _hook(self) -> None:
        if shutil.which("iptables") is None:
            return
        _iptables("-N", self.chain)
        self._chain_made = True
        _iptables(
            "-A", self.chain, "-m", "owner", "--gid-owner", str(self.group),
            "-j", "CONNMARK", "--set-mark", self.mark,
        )  # fmt: skip
        _iptables("-I", "OUTPUT", "1", "-j", self.chain)

    def _drop_rule(self) -> list[str]:
        ports = ",".join(str(n.dist_port) for n in self.nodes)
        return [
            self.chain, "-p", "tcp", "-m", "connmark", "--mark", self.mark,
            "-m", "multiport", "--ports", ports, "-j", "DROP",
        ]  # fmt: skip

    def partition(self) -> PrivateRabbit:
        """Cut the last node from the other two (Erlang distribution only); it."""
        if not self._chain_made:
            raise RuntimeError("iptables is not available: cannot partition")
        _iptables("-A", *self._drop_rule())
        return self.nodes[-1]

    def heal(self) -> None:
        _iptables("-D", *self._drop_rule(), check=False)

    def any_running(self) -> PrivateRabbit:
        for node in self.nodes:
            if node.proc is not None:
                return node
        raise RuntimeError("no node of the cluster is running")

    def leader(self, queue: str, via: PrivateRabbit | None = None) -> PrivateRabbit:
        """The node leading quorum queue ``queue``."""
        out = (via or self.any_running()).ctl("list_queues", "name", "leader", "--no-table-headers")
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                for node in self.nodes:
                    if node.node == parts[1]:
                        return node
        raise RuntimeError(f"no leader found for {queue}: {out!r}")

    def members_online(self, queue: str, via: PrivateRabbit) -> int:
        out = via.ctl("list_queues", "name", "online", "--no-table-headers")
        for line in out.splitlines():
            if line.startswith(queue + "\t") or line.split(maxsplit=1)[0] == queue:
                return line.count("@")
        return 0

    def stop(self) -> None:
        self.heal()
        if self._chain_made:
            _iptables("-D", "OUTPUT", "-j", self.chain, check=False)
            _iptables("-F", self.chain, check=False)
            _iptables("-X", self.chain, check=False)
            self._chain_made = False
        for node in self.nodes:
            if node.proc is not None:
                node.kill()  # state is thrown away with the temporary directory


class SentinelRedis:
    """A Redis primary, one replica and three Sentinels (quorum 2, down after 1 s)."""

    SERVICE = "chaosmaster"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port(), free_port()]  # initial primary, replica
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def _spawn(self, port: int, conf: Path, *extra: str) -> None:
        binary = shutil.which("redis-server") or "redis-server"
        self.procs[port] = subprocess.Popen(
            [binary, str(conf), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _ping(self, port: int) -> bool:
        out = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        return out.stdout.strip() == "PONG"

    def _wait(self, port: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self._ping(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis on {port} did not start")
            time.sleep(0.1)

    def start_server(self, port: int, replica_of: int | None = None) -> None:
        conf = self.root / f"redis-{port}.conf"
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            'save ""',
            "appendonly yes",
            "appendfsync everysec",
            f"dir {self.root}",
            f"appendfilename appendonly-{port}.aof",
            f"appenddirname aof-{port}",
        ]
        if replica_of is not None:
            lines.append(f"replicaof 127.0.0.1 {replica_of}")
        if not conf.exists():
            conf.write_text("\n".join(lines) + "\n")
        self._spawn(port, conf)
        self._wait(port)

    def start(self) -> None:
        primary, replica = self.ports
        self.start_server(primary)
        self.start_server(replica, replica_of=primary)
        for port in self.sentinel_ports:
            conf = self.root / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.root}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 5000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            self._spawn(port, conf, "--sentinel")
            self._wait(port)
        deadline = time.monotonic() + 20
        while self.primary_port() != primary or not self._replica_synced(primary):
            if time.monotonic() > deadline:
                raise RuntimeError("sentinels did not settle on the primary with its replica")
            time.sleep(0.2)

    def _replica_synced(self, primary: int) -> bool:
        out = subprocess.run(
            ["redis-cli", "-p", str(primary), "info", "replication"], capture_output=True, text=True
        ).stdout
        return "connected_slaves:1" in out and "state=online" in out

    def primary_port(self) -> int | None:
        for port in self.sentinel_ports:
            out = subprocess.run(
                ["redis-cli", "-p", str(port), "sentinel", "get-master-addr-by-name", self.SERVICE],
                capture_output=True,
                text=True,
            ).stdout.split()
            if len(out) == 2 and out[1].isdigit():
                return int(out[1])
        return None

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port, None)
        if proc is not None:
            proc.kill()
            proc.wait()

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
