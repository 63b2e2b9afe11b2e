"""``flowstone db …``: the PostgreSQL plugin's commands for the ``flowstone`` CLI.

The CLI calls the function of each entry point in the ``flowstone.cli`` group, named after
its command: :func:`register_db_cli` (``db``) and :func:`register_worker_cli` (``worker``).
``flowstone db migrate --dsn … [--schema …]`` applies the schema migrations (safe to run
from several processes at once); ``flowstone db status`` prints the schema's version.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import asyncpg

from flowstone import ConfigurationError

from ._errors import map_errors
from ._migrations import current_version, latest_version, migrate_schema
from ._sql import validate_identifier
from ._worker_cli import register_worker_cli

if TYPE_CHECKING:
    import argparse

__all__ = ["register_cli", "register_db_cli", "register_worker_cli"]

_DSN_ENV = "FLOWSTONE_DSN"


def register_db_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add the ``db`` command group (``migrate``, ``status``) to the CLI's subparsers.

    Each command's ``func`` is a coroutine function of the parsed arguments returning the
    exit code, as ``flowstone.cli`` expects.
    """
    db = subparsers.add_parser(
        "db",
        help="manage flowstone's PostgreSQL schema",
        description="Manage the PostgreSQL schema that holds flowstone's durable state.",
    )
    commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    migrate = commands.add_parser(
        "migrate",
        help="create the schema or apply its missing migrations",
        description=(
            "Create the schema or apply the migrations it lacks. Idempotent, and safe to run "
            "from several processes at once (an advisory lock serialises them)."
        ),
    )
    status = commands.add_parser(
        "status", help="show the schema's migration version", description="Show the version."
    )
    for parser in (migrate, status):
        parser.add_argument(
            "--dsn",
            default=None,
            help=f"postgresql:// connection string (default: ${_DSN_ENV})",
        )
        parser.add_argument(
            "--schema", default="flowstone", help="the schema to use (default: flowstone)"
        )
    migrate.set_defaults(func=_migrate_command)
    status.set_defaults(func=_status_command)


def register_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add both of the plugin's commands, ``db`` and ``worker`` (for code that builds its
    own parser; the ``flowstone`` CLI adds each through its own entry point)."""
    register_db_cli(subparsers)
    register_worker_cli(subparsers)


def _options(args: argparse.Namespace) -> tuple[str, str]:
    dsn = args.dsn or os.environ.get(_DSN_ENV)
    if not dsn:
        raise ConfigurationError(f"no database given: pass --dsn or set ${_DSN_ENV}")
    try:
        validate_identifier(args.schema, "schema name")
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return dsn, args.schema


async def _connect(dsn: str) -> asyncpg.Connection[asyncpg.Record]:
    with map_errors("connect to PostgreSQL"):
        return await asyncpg.connect(dsn)


async def _migrate_command(args: argparse.Namespace) -> int:
    dsn, schema = _options(args)
    conn = await _connect(dsn)
    try:
        with map_errors(f"migrate schema {schema!r}"):
            applied = await migrate_schema(conn, schema)
    finally:
        await conn.close()
    if applied:
        done = ", ".join(f"{v:04d}" for v in applied)
        sys.stdout.write(f"schema {schema!r}: applied {done}; now at {latest_version():04d}\n")
    else:
        sys.stdout.write(f"schema {schema!r}: up to date at {latest_version():04d}\n")
    return 0


async def _status_command(args: argparse.Namespace) -> int:
    dsn, schema = _options(args)
    conn = await _connect(dsn)
    try:
        with map_errors(f"read the version of schema {schema!r}"):
            found = await current_version(conn, schema)
    finally:
        await conn.close()
    known = latest_version()
    state = (
        "up to date"
        if found == known
        else ("newer than this flowstone" if found > known else "needs migrate")
    )
    sys.stdout.write(f"schema {schema!r}: at {found:04d}, code knows {known:04d} ({state})\n")
    return 0 if found == known else 1
