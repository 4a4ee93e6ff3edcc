"""A PostgreSQL cluster of a test's own, for what the suite's shared cluster must not see: a
password-only pg_hba (the shared one trusts everyone) or a server stop and start (which would cut
every other test's connections, parallel ones included)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Cluster:
    """A running throwaway cluster on loopback; ``admin_password`` is empty when it trusts."""

    port: int
    admin_password: str
    folder: Path
    bindir: Path
    run_as: list[str] = field(default_factory=list)

    def admin(self, database: str = "postgres"):
        import pyodbc

        from xml_extractor.db.odbc import connection_string

        return pyodbc.connect(
            connection_string(
                [
                    ("Driver", "PostgreSQL Unicode"),
                    ("Server", "127.0.0.1"),
                    ("Port", str(self.port)),
                    ("Database", database),
                    ("Uid", "postgres"),
                    ("Pwd", self.admin_password),
                ]
            ),
            autocommit=True,
        )

    def url(self, database: str) -> str:
        """The tool's URL of ``database`` as the admin (no password: for a trusting cluster)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self._pg_ctl(
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
            "-c max_connections=40 -c shared_buffers=16MB",
            "start",
        )

    def stop(self) -> None:
        """As a crash or a failover would: no checkpoint, every connection cut."""
        self._pg_ctl("-m", "immediate", "stop")

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            self.run_as + [str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


@contextmanager
def throwaway_cluster(password: bool) -> Iterator[Cluster]:
    """initdb and start a cluster on a free loopback port; with ``password`` every connection must
    give a SCRAM password (the admin's is ``Cluster.admin_password``), else it trusts. Stopped and
    removed on exit. Skips where the server binaries are missing, except under CI."""
    bindir = _pg_bin()
    if bindir is None or shutil.which("odbcinst") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but the PostgreSQL server binaries or unixODBC are missing")
        pytest.skip("needs PostgreSQL server binaries (scripts/test.sh installs them)")
    root = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="xe-pg-"))
    run_as = ["runuser", "-u", "postgres", "--"] if root else []
    if root:
        shutil.chown(folder, "postgres", "postgres")
    admin_pw = secrets.token_hex(16) if password else ""
    auth = ["--auth=scram-sha-256"] if password else ["--auth=trust"]
    if password:
        pwfile = folder / "pw"
        pwfile.write_text(admin_pw + "\n")
        if root:
            shutil.chown(pwfile, "postgres", "postgres")
        auth.append(f"--pwfile={pwfile}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    initdb = [str(bindir / "initdb"), "-D", str(folder / "data"), "-U", "postgres", *auth]
    subprocess.run(run_as + initdb + ["-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    cluster = Cluster(port, admin_pw, folder, bindir, run_as)
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            run_as
            + [str(bindir / "pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
