"""Start and stop a real redis-server for tests: free loopback port, optional password, TLS or AOF.

Plain helpers, not fixtures, so conftest, tests and scripts can all use them. Installs nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

INSTALL_HINT = "redis-server is not installed: apt-get install -y redis-server"


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (bind to port 0, read it back, close)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with openssl: (cert, key); the cert is its own CA."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed: apt-get install -y openssl")
    cert, key = directory / "redis.crt", directory / "redis.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class RedisServer:
    """One redis-server process on 127.0.0.1; `.url` reaches it (with password / rediss:// as set)."""

    def __init__(
        self, *, password: str | None = None, tls: bool = False, appendonly: bool = False
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self._binary = binary
        self.password = password
        self.tls = tls
        self.appendonly = appendonly
        self._dir = Path(tempfile.mkdtemp(prefix="eventkit-redis-"))
        self.port = free_port()
        self.cert: Path | None = None
        if tls:
            self.cert, self._key = make_self_signed_cert(self._dir)
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.cert}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The running process's id (to signal it), None while stopped."""
        return None if self._process is None else self._process.pid

    def _args(self) -> list[str]:
        args = [self._binary, "--bind", "127.0.0.1", "--save", "", "--dir", str(self._dir)]
        args += ["--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no"]
        if self.tls:
            assert self.cert is not None
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.cert),
                     "--tls-key-file", str(self._key), "--tls-ca-cert-file", str(self.cert),
                     "--tls-auth-clients", "no"]  # fmt: skip
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def start(self) -> None:
        """Start the process (on the same port and dir as before) and wait until it answers PING."""
        log = open(self._dir / "redis.log", "ab")  # noqa: SIM115 - the child keeps writing to it
        self._process = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_for_ping()

    def _wait_for_ping(self, timeout: float = 10.0) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                log = (self._dir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server exited with {self._process.returncode}:\n{log}")
            try:
                client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
                try:
                    if client.ping():
                        return
                finally:
                    client.close()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate and wait (redis flushes its AOF on a clean shutdown); idempotent."""
        process, self._process = self._process, None
        stop_process(process)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its temp dir (certificates, AOF, log)."""
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"RedisServer({scheme}://127.0.0.1:{self.port}, running={self._process is not None})"


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """Terminate a redis-server and wait for it (it flushes its AOF on a clean shutdown); kill it
    if it has not ended within 10 s. Nothing to do for None or an ended process."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
