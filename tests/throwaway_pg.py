"""A PostgreSQL cluster of the suite's own, for tests that restart, stop or kill the server.

Loaded for the whole suite by the root ``conftest.py``. The ``throwaway_pg`` fixture
(session scope) runs ``initdb`` into a new temporary directory, starts the server on a
free loopback port, yields a :class:`ThrowawayCluster` (its ``dsn`` and ``start()``,
``stop()``, ``restart()``) and removes the directory at the end. Nothing outside that
directory is touched: not the server at ``FLOWSTONE_TEST_PG_DSN``, not any cluster
configuration of the machine.

The binaries are found on ``PATH``, in ``FLOWSTONE_TEST_PG_BINDIR``, or in the newest
``/usr/lib/postgresql/*/bin``. Without them the fixture skips, and fails instead under
``CI=true``. PostgreSQL refuses to run as root: as root, the cluster belongs to the
``postgres`` user and its commands run through ``runuser``; as anyone else, it belongs to
the current user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

SERVER_USER = "postgres"  # who owns the cluster when the tests run as root
START_TIMEOUT = 60  # seconds for pg_ctl to see the server accept connections


def find_bindir() -> Path | None:
    """The directory with ``initdb`` and ``pg_ctl``, or ``None`` when there is none."""
    given = os.environ.get("FLOWSTONE_TEST_PG_BINDIR")
    if given:
        return Path(given)
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return Path(initdb).parent

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    return found[-1].parent if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayCluster:
    """A PostgreSQL cluster in a directory of its own, on a loopback port of its own.

    :ivar dsn: where to connect (database ``postgres``, role ``postgres``, a random password)
    :ivar port: the port the server listens on, on 127.0.0.1 only
    """

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.password = secrets.token_hex(12)
        self.dsn = f"postgresql://postgres:{self.password}@127.0.0.1:{port}/postgres"
        self._user = SERVER_USER if os.geteuid() == 0 else None

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{shlex.join(command)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}{log}"
            )

    def create(self) -> None:
        """Make the data directory (``initdb``) and the settings for this port."""
        if self._user is not None:
            owner = pwd.getpwnam(self._user)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self._user is not None:
            os.chown(password_file, pwd.getpwnam(self._user).pw_uid, -1)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--pwfile",
            str(password_file),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        password_file.unlink()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "max_connections": "100",
            "fsync": "off",  # a throwaway: a clean shutdown still writes everything
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# throwaway cluster of the flowstone tests\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self._set_port(self.port)

    def _set_port(self, port: int) -> None:
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {port}\n")
        self.port = port
        self.dsn = f"postgresql://postgres:{self.password}@127.0.0.1:{port}/postgres"

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run(
            "pg_ctl",
            action,
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
            "--wait",
            "--timeout",
            str(START_TIMEOUT),
            *args,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``mode``: ``smart``, ``fast`` or ``immediate``) and wait for it."""
        self._pg_ctl("stop", "--mode", mode)

    def restart(self, mode: str = "fast") -> None:
        """Stop the server and start it again; returns once it accepts connections."""
        self._pg_ctl("restart", "--mode", mode)

    def running(self) -> bool:
        """Whether the server is up (``pg_ctl status``)."""
        try:
            self._run("pg_ctl", "status", "--pgdata", str(self.data))
        except RuntimeError:
            return False
        return True

    def start_on_a_free_port(self, attempts: int = 3) -> None:
        """Start; when another process took the port meanwhile, try another one."""
        for attempt in range(attempts):
            try:
                self.start()
                return
            except RuntimeError as exc:
                if "could not bind" not in str(exc) or attempt == attempts - 1:
                    raise
                self._set_port(free_port())

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster's directory."""
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[ThrowawayCluster]:
    """Create, start and finally remove a :class:`ThrowawayCluster` (skips without binaries)."""
    bindir = find_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        _unavailable(
            "no PostgreSQL binaries (initdb, pg_ctl) on PATH, in FLOWSTONE_TEST_PG_BINDIR or "
            "under /usr/lib/postgresql/*/bin: the tests that restart a server need them "
            "(apt-get install postgresql)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            _unavailable(
                f"running as root, and there is no {SERVER_USER!r} user to own the cluster"
            )
        if shutil.which("runuser") is None:
            _unavailable("running as root, and there is no runuser to run PostgreSQL as postgres")
    root = Path(tempfile.mkdtemp(prefix="flowstone-pg-"))
    cluster = ThrowawayCluster(bindir, root, free_port())
    try:
        cluster.create()
        cluster.start_on_a_free_port()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def throwaway_pg() -> Iterator[ThrowawayCluster]:
    """A PostgreSQL server of the suite's own that tests may restart, stop or kill.

    Use it, never ``pg_dsn``, for anything that takes a server down. A test that stops it
    starts it again before it ends (see :meth:`ThrowawayCluster.running`).
    """
    with throwaway_cluster() as cluster:
        yield cluster
