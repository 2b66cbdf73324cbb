"""Write → visible: from a command's commit to its effect in GraphQL, 32 writers, embedded.

The embedded platform with the demo loaded; ``WRITERS`` concurrent clients each register
``PER_WRITER`` institutions one after another. For each registration the clock starts
when the command returns (the events are committed: ``Platform.execute`` answers after
the append) and stops when ``institution(id:)`` through the GraphQL schema (in process)
returns it, asked once the platform says its read models applied the commit
(``Platform.reflects``, woken by the projection runner, so no client polls and adds
load); so the figure includes the relay, the in-process bus, the projection's commit to
the read store and the query.

Beside it, in the same run and under the same load:

* **commit**: the command itself (load, decide, append with its fsync): the floor any
  read-your-write path stands on.
* **GraphQL mutation**: ``registerInstitution`` through the schema, which answers from
  the read model once it reflects the command (read-your-writes), so its latency is
  commit + visibility as a client of the API sees it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench._common import (
    Latency,
    console,
    demo_platform,
    latency_table,
    print_machine,
    quiet_logs,
    verdict,
)
from services.common.application import CommandContext
from services.common.auth import SYSTEM
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from services.registry.domain.commands import RegisterInstitution
from services.registry.domain.rules import credit_code_check_char

WRITERS = 32
PER_WRITER = 30
REGIONS = ("640402", "640422", "640423", "640424", "640425")

VISIBLE = "query($id: ID!) { institution(id: $id) { id } }"
REGISTER = """
mutation($input: RegisterInstitutionInput!) { registerInstitution(input: $input) { id } }
"""


def credit_code(region: str, n: int) -> str:
    first17 = f"52{region}MB{n:07d}"[:17]
    return first17 + credit_code_check_char(first17)


def fields(writer: int, n: int, serial: int) -> dict[str, Any]:
    region = REGIONS[writer % len(REGIONS)]
    return {
        "name": f"可见性测试培训学校{writer}-{n}",
        "credit_code": credit_code(region, serial),
        "region": region,
        "category": "NON_SUBJECT",
        "non_subject_kind": "ARTS",
        "mode": "OFFLINE",
    }


async def main() -> None:
    quiet_logs()
    clock = time.perf_counter
    commit: list[float] = []
    visible: list[float] = []
    mutation: list[float] = []
    async with demo_platform("bench-visible-") as demo:
        platform = demo.platform

        async def query(id: str) -> bool:
            data = await execute_vars(VISIBLE, {"id": id})
            return data["institution"] is not None

        schema = build_schema()

        async def execute_vars(document: str, variables: dict[str, Any]) -> dict[str, Any]:
            result = await schema.execute(
                document,
                variable_values=variables,
                context_value=GatewayContext(platform, SYSTEM),
            )
            if result.errors:
                raise RuntimeError(f"GraphQL errors: {result.errors}")
            assert result.data is not None
            return result.data

        async def command_writer(writer: int) -> None:
            for n in range(PER_WRITER):
                serial = writer * 1000 + n
                started = clock()
                outcome = await platform.execute(
                    RegisterInstitution(**fields(writer, n, serial)),
                    CommandContext(actor="bench"),
                )
                committed = clock()
                commit.append(committed - started)
                # Woken when the read models have applied the commit (no polling load),
                # then one query through GraphQL must show it.
                if not await platform.reflects(outcome, timeout=60):
                    raise RuntimeError("the read models did not apply a commit in 60 s")
                if not await query(outcome.aggregate.id):
                    raise RuntimeError("applied but not visible in GraphQL")
                visible.append(clock() - committed)

        async def graphql_writer(writer: int) -> None:
            for n in range(PER_WRITER):
                serial = 500_000 + writer * 1000 + n
                data = fields(writer, n, serial)
                variables = {
                    "input": {
                        "name": data["name"] + "乙",
                        "creditCode": data["credit_code"],
                        "region": data["region"],
                        "category": "NON_SUBJECT",
                        "nonSubjectKind": "ARTS",
                        "mode": "OFFLINE",
                    }
                }
                started = clock()
                await execute_vars(REGISTER, variables)
                mutation.append(clock() - started)

        await execute_vars("{ __typename }", {})
        with_commands = clock()
        await asyncio.gather(*(command_writer(w) for w in range(WRITERS)))
        commands_took = clock() - with_commands
        with_graphql = clock()
        await asyncio.gather(*(graphql_writer(w) for w in range(WRITERS)))
        graphql_took = clock() - with_graphql

    rows = [
        Latency("commit (the command's append, fsync)", tuple(commit), commands_took),
        Latency(
            "write → visible in GraphQL",
            tuple(visible),
            commands_took,
            "commit (the command's append, fsync)",
        ),
        Latency(
            "GraphQL mutation (answers once the read model reflects it)",
            tuple(mutation),
            graphql_took,
            "commit (the command's append, fsync)",
        ),
    ]
    console.print(
        latency_table(
            f"write → visible: {WRITERS} concurrent writers × {PER_WRITER} registrations, "
            "embedded (target: p99 ≤ 250 ms)",
            rows,
        )
    )
    p99 = rows[1].ms(99)
    verdict(
        f"write → visible p99 ≤ 250 ms, {WRITERS} writers",
        f"{p99:.0f} ms p99 (p50 {rows[1].ms(50):.0f} ms)",
        p99 <= 250,
    )


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
