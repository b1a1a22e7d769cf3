"""A throwaway PostgreSQL server for the tests: Debian's binaries, a temporary folder, a Unix socket."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class PostgresServer:
    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed: make test installs it (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.base = Path(tempfile.mkdtemp(prefix="nst-pg-"))
        self.data = self.base / "data"
        self.port = 54329 + os.getpid() % 500
        self._names = itertools.count(1)
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            shutil.chown(self.base, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        else:
            self.prefix = []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, text=True)

    def start(self) -> "PostgresServer":
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres",
                  "--encoding=UTF8", "--no-sync")
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        options = f"-k {self.base} -p {self.port} -c listen_addresses='' -c fsync=off -c max_connections=200"
        args = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60"]
        if action in ("start", "restart"):
            args += ["-o", options, "-l", str(self.base / "server.log")]
        if action in ("stop", "restart"):
            args += ["-m", "fast"]
        self._run(*args, action)

    def restart(self) -> None:
        self._pg_ctl("restart")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{database}?host={self.base}&port={self.port}"

    def new_database(self) -> str:
        import psycopg

        name = f"nst_test_{next(self._names)}"
        with psycopg.connect(host=str(self.base), port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._pg_ctl("stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
