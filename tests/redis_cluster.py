"""Start and stop a real 3-master Redis Cluster for tests: free loopback ports, AOF, one temp dir,
optionally a password (requirepass + masterauth) and TLS (clients and the cluster bus).

Three `redis-server --cluster-enabled yes` joined by `redis-cli --cluster create ... --cluster-yes`;
a plain helper (not a fixture), like redis_server.RedisServer, so fixtures, tests and benchmarks
all use it. Every node is stopped on every exit path (close(), the context manager, atexit).
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from tests.redis_server import INSTALL_HINT, free_port, make_self_signed_cert, stop_process

#: a node that stops answering is marked failing after this long (the default is 15 s)
NODE_TIMEOUT_MS = 2_000


class Access:
    """How clients reach the nodes: password and TLS certificate (its own CA), or neither."""

    def __init__(self, password: str | None, cert: tuple[Path, Path] | None) -> None:
        self.password = password
        self.cert = cert

    def server_args(self, port: int) -> list[str]:
        args = (
            ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
        )
        if self.cert is None:
            return [*args, "--port", str(port)]
        cert, key = (str(path) for path in self.cert)
        return [*args, "--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
                "--tls-auth-clients", "no"]  # fmt: skip

    def cli_args(self) -> list[str]:
        args = ["--no-auth-warning", "-a", self.password] if self.password else []
        return [*args, "--tls", "--cacert", str(self.cert[0])] if self.cert else args

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"password": self.password}
        if self.cert is not None:
            kwargs |= {"ssl": True, "ssl_ca_certs": str(self.cert[0])}
        return kwargs

    def url(self, port: int) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.cert is not None:
            return f"rediss://{auth}127.0.0.1:{port}/0?ssl_ca_certs={self.cert[0]}"
        return f"redis://{auth}127.0.0.1:{port}/0"


class ClusterNode:
    """One redis-server process of the cluster, restartable on its port, nodes.conf and AOF."""

    def __init__(self, binary: str, directory: Path, port: int, access: Access) -> None:
        self.port = port
        #: the cluster bus: its own free port (port + 10000, the default, may be out of range)
        self.bus_port = free_port()
        self.dir = directory
        self.access = access
        self._binary = binary
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.access.url(self.port)

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        args = [
            self._binary, *self.access.server_args(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf",
            "--cluster-port", str(self.bus_port),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--appendonly", "yes", "--save", "",
            "--daemonize", "no",
        ]  # fmt: skip
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - the child keeps writing to it
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _wait(lambda: self._answers(), f"node {self.address} to answer PING", self)

    def _answers(self) -> bool:
        import redis

        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_connect_timeout=0.5,
            **self.access.client_kwargs(),
        )  # fmt: skip
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError):
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no AOF flush beyond what the kernel already has."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


class RedisClusterServers:
    """Three masters (no replicas) covering all 16384 slots; `.url` reaches the first node."""

    def __init__(self, masters: int = 3, *, password: str | None = None, tls: bool = False) -> None:
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise RuntimeError(INSTALL_HINT)
        self._cli = cli
        self._dir = Path(tempfile.mkdtemp(prefix="eventkit-cluster-"))
        self.access = Access(password, make_self_signed_cert(self._dir) if tls else None)
        self.nodes = [
            ClusterNode(binary, self._dir / str(port), port, self.access)
            for port in (free_port() for _ in range(masters))
        ]
        atexit.register(self.close)
        try:
            for node in self.nodes:
                node.start()
            self.cli("--cluster", "create", *(n.address for n in self.nodes),
                     "--cluster-replicas", "0", "--cluster-yes")  # fmt: skip
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def cli(self, *args: str) -> str:
        """redis-cli with `args`; its output, or RuntimeError with it."""
        command = [self._cli, *self.access.cli_args(), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def client(self, node: ClusterNode) -> Any:
        import redis

        return redis.Redis(
            host="127.0.0.1", port=node.port, decode_responses=True, **self.access.client_kwargs()
        )

    def node_of_slot(self, slot: int) -> ClusterNode:
        """The master that serves `slot`, as CLUSTER NODES on the first running node says."""
        asked = next(node for node in self.nodes if node.process is not None)
        with self.client(asked) as client:
            nodes = client.execute_command("CLUSTER NODES")  # redis-py parses it into a dict
        for address, node in nodes.items():
            for first, *last in node["slots"]:
                if int(first) <= slot <= int(last[0] if last else first):
                    port = int(address.split("@")[0].rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == port)
        raise RuntimeError(f"no node serves slot {slot}")

    def node_id(self, node: ClusterNode) -> str:
        with self.client(node) as client:
            return str(client.execute_command("CLUSTER MYID"))

    def keyslot(self, key: str) -> int:
        with self.client(self.nodes[0]) as client:
            return int(client.execute_command("CLUSTER KEYSLOT", key))

    def wait_ok(self, timeout: float = 60.0) -> None:
        """Until every running node reports cluster_state:ok and agrees on who serves each slot."""

        def agreed() -> bool:
            views = []
            for node in self.nodes:
                if node.process is None:
                    continue
                with self.client(node) as client:
                    try:
                        if client.cluster("info")["cluster_state"] != "ok":
                            return False
                        slots = client.execute_command("CLUSTER SLOTS")
                    except Exception:  # noqa: BLE001 - loading, or not yet joined
                        return False
                views.append(sorted((s, e, int(m[1])) for s, e, m, *_ in slots))
            return all(view == views[0] for view in views)

        _wait(agreed, "cluster_state:ok on every node", None, timeout)

    def close(self) -> None:
        """Stop every node and remove the temp dir; idempotent."""
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> RedisClusterServers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _wait(check: Any, what: str, node: ClusterNode | None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if node is not None and node.process is not None and node.process.poll() is not None:
            raise RuntimeError(f"redis-server {node.address} exited:\n{node.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
