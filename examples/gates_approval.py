"""An approval gate on PostgreSQL: the run waits for a person, the process exits, and a
second process approves and finishes the run.

Run it against a PostgreSQL server (by default the test server that ``make test`` starts),
with a secret for the gate tokens::

    export FLOWSTONE_GATE_SECRET="$(python -c 'import secrets; print(secrets.token_hex(32))')"
    python examples/gates_approval.py start --run-id report-1
    python examples/gates_approval.py pending
    python examples/gates_approval.py approve --run-id report-1 --by alice

The first command builds the report and stops at the approval gate: the run ends
``waiting`` and the process exits (the notifier prints where an e-mail would go). The
last one, in another process, approves the gate and resumes the run: the report is not
built again, and the approved step runs. ``reject`` instead fails the run's last step.
A ``flowstone worker`` for the pipeline would resume it as well::

    PYTHONPATH=examples flowstone worker --dsn "$DSN" --schema flowstone_gates \\
        --pipeline gates_approval:pipeline
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import anyio

import flowstone as fs
from flowstone.ext import gates
from flowstone.ext.postgres import PostgresStore

DEFAULT_DSN = "postgresql://postgres:postgres@127.0.0.1:5432/test"


async def email_the_editors(gate: gates.OpenGate) -> None:
    """Where the approval request goes (an e-mail with a link, in real life)."""
    print(f"to editors: {gate.message} approve gate {gate.gate_id} by {gate.expires_at:%Y-%m-%d}")


@fs.asset
async def report() -> dict[str, Any]:
    """The weekly report (the expensive part: it must not run twice)."""
    print("built the report")
    return {"week": "2025-W01", "revenue": 1234}


@fs.asset
@gates.approval(
    timeout=7 * 24 * 3600,
    on_timeout="reject",
    message="Publish the weekly report?",
    notify=email_the_editors,
)
async def published(report: dict[str, Any], approval: gates.Approval) -> str:
    """Publish it, once an editor approved."""
    return f"published {report['week']} (approved by {approval.by})"


pipeline = fs.Pipeline([report, published], name="weekly-report")


async def main(args: argparse.Namespace) -> int:
    if not os.environ.get("FLOWSTONE_GATE_SECRET"):
        print("set FLOWSTONE_GATE_SECRET to a secret of at least 16 characters", file=sys.stderr)
        return 2
    store = PostgresStore(args.dsn, schema=args.schema)
    async with fs.Runtime(store=store, pipelines=[pipeline]) as rt:
        if args.command == "start":
            result = await rt.materialize(pipeline, run_id=args.run_id)
        elif args.command == "pending":
            for gate in await gates.list_open(runtime=rt, kind="approval"):
                print(f"{gate.run_id}: {gate.message} (gate {gate.gate_id})")
            return 0
        else:
            [gate] = await gates.list_open(runtime=rt, run_id=args.run_id)
            decide = gates.approve if args.command == "approve" else gates.reject
            await decide(gate.gate_id, by=args.by, reason=args.reason, runtime=rt)
            result = await rt.resume(args.run_id, raise_on_error=False)
    print(f"run {result.run_id}: {result.status.value}")
    if result.ok:
        print(result["published"])
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "pending", "approve", "reject"])
    parser.add_argument("--dsn", default=os.environ.get("FLOWSTONE_DSN", DEFAULT_DSN))
    parser.add_argument("--schema", default="flowstone_gates")
    parser.add_argument("--run-id", default="report-1")
    parser.add_argument("--by", default="alice")
    parser.add_argument("--reason", default=None)
    sys.exit(anyio.run(main, parser.parse_args()))
