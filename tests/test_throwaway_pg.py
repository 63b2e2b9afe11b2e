"""The throwaway cluster, and that no test takes down a server it did not make."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import anyio.to_thread
import pytest

from throwaway_pg import ThrowawayCluster, throwaway_cluster

asyncpg = pytest.importorskip("asyncpg")

TESTS = Path(__file__).resolve().parent
# Commands that stop, restart or reconfigure a server the suite did not create.
SERVER_CONTROL = re.compile(r"pg_ctlcluster|pg_ctl\b|systemctl|ALTER SYSTEM|pg_reload_conf")


def test_only_the_throwaway_cluster_is_ever_taken_down() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.name not in {"throwaway_pg.py", Path(__file__).name}
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SERVER_CONTROL.search(line)
    ]
    assert not offenders, "use the throwaway_pg fixture instead:\n" + "\n".join(offenders)


def test_the_set_up_script_never_restarts_or_reconfigures_a_server() -> None:
    script = TESTS.parent / "scripts" / "setup-postgres.sh"
    code = [line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")]
    offenders = [
        line.strip()
        for line in code
        if re.search(r"\brestart\b|\breload\b|ALTER SYSTEM|pg_reload_conf", line)
    ]
    assert not offenders, offenders
    # each change it makes is printed just before it is made
    for action in ("apt-get install", '"$CLUSTER" start', "ALTER ROLE", "createdb "):
        [at] = [n for n, line in enumerate(code) if action in line]
        assert any(line.lstrip().startswith("change ") for line in code[at - 3 : at]), action


async def test_the_throwaway_cluster_restarts_and_keeps_its_data(
    throwaway_pg: ThrowawayCluster, pg_dsn: str
) -> None:
    assert urlsplit(throwaway_pg.dsn).port != (urlsplit(pg_dsn).port or 5432)
    conn = await asyncpg.connect(throwaway_pg.dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kept (n int); INSERT INTO kept VALUES (1)")
        before = await conn.fetchval("SELECT pg_postmaster_start_time()")
        await anyio.to_thread.run_sync(throwaway_pg.restart)
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)):
            await conn.fetchval("SELECT 1")  # the old backend is gone
    finally:
        await conn.close()
    conn = await asyncpg.connect(throwaway_pg.dsn)
    try:
        assert await conn.fetchval("SELECT pg_postmaster_start_time()") > before
        assert await conn.fetchval("SELECT count(*) FROM kept") >= 1
    finally:
        await conn.close()
    await anyio.to_thread.run_sync(throwaway_pg.stop)
    assert not throwaway_pg.running()
    with pytest.raises(OSError):
        await asyncpg.connect(throwaway_pg.dsn, timeout=5)
    await anyio.to_thread.run_sync(throwaway_pg.start)
    assert throwaway_pg.running()


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)]
)
def test_without_binaries_it_skips_and_under_ci_it_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("FLOWSTONE_TEST_PG_BINDIR", str(tmp_path))  # no initdb in it
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no PostgreSQL binaries"), throwaway_cluster():
        pass
