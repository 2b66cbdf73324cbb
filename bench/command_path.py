"""The command path beside the ``eventsourcing`` library: load, decide, append one event.

Both sides do the same work on SQLite files with WAL, in one process: create an
aggregate (an institution registered), then load it, run a command and append the one
event it decides (a YELLOW warning card), with one client and with 32 concurrent ones.

* **eventsourcing 9.5.6** (the ``bench`` extra): an ``Aggregate`` with two ``@event``
  methods in an ``Application`` on ``eventsourcing.sqlite``; its API is synchronous, so
  32 clients are 32 threads.
* **Shuangjian**: the registry's command service (``services.registry.handlers.Registry``)
  on ``SQLiteEventStore`` (``synchronous=FULL``: an answered command survives power
  loss), with its domain rules, idempotency and retry policy; 32 clients are 32
  coroutines. A registration also reserves the credit code (a second stream, in the same
  commit). Concurrent commands that reach the store together share one transaction and
  one fsync (group commit), each still version-checked and all-or-nothing on its own.

Each client works on institutions of its own, so no command waits for another's stream.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from uuid import UUID

from bench._common import (
    Stopwatch,
    Throughput,
    console,
    print_machine,
    quiet_logs,
    throughput_table,
    verdict,
)
from services.common.application import CommandContext
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore
from services.registry.domain.commands import IssueWarningCard, RegisterInstitution
from services.registry.domain.rules import RegistryPolicy, credit_code_check_char
from services.registry.handlers import Registry
from services.registry.module import no_rectifications

COUNT = 2_000  # per case
CLIENTS = 32
REGION = "640402"


def credit_code(n: int) -> str:
    first17 = f"52{REGION}MA{n:07d}"[:17]
    return first17 + credit_code_check_char(first17)


# --- eventsourcing -----------------------------------------------------------------------


def eventsourcing_app(path: Path) -> Any:
    """The peer: an ``Institutions`` application of ``eventsourcing`` on its SQLite module."""
    return _peer_application()(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )


@functools.cache  # eventsourcing registers each class by its topic, once
def _peer_application() -> Any:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    class Institution(Aggregate):
        @event("Registered")
        def __init__(self, name: str, region: str) -> None:
            self.name = name
            self.region = region
            self.cards: list[str] = []

        @event("CardIssued")
        def issue_card(self, color: str, reason: str) -> None:
            self.cards.append(color)

    class Institutions(Application[UUID]):
        def register(self, name: str) -> UUID:
            institution = Institution(name=name, region=REGION)
            self.save(institution)
            return institution.id

        def card(self, id: UUID, reason: str) -> None:
            institution: Institution = self.repository.get(id)
            institution.issue_card(color="YELLOW", reason=reason)
            self.save(institution)

    return Institutions


def eventsourcing_cases(root: Path) -> list[Throughput]:
    app = eventsourcing_app(root / "eventsourcing.db")
    with Stopwatch() as created:
        ids = [app.register(f"原州区培训机构{n}") for n in range(COUNT)]
    with Stopwatch() as one:
        for n, id in enumerate(ids):
            app.card(id, f"检查 {n}")
    shares = [ids[k::CLIENTS] for k in range(CLIENTS)]

    def client(mine: list[UUID]) -> None:
        for n, id in enumerate(mine):
            app.card(id, f"复查 {n}")

    with ThreadPoolExecutor(CLIENTS) as pool, Stopwatch() as many:
        list(pool.map(client, shares))
    app.close()
    return [
        Throughput("eventsourcing: create one aggregate", COUNT, created.seconds),
        Throughput("eventsourcing: load + command + append, 1 client", COUNT, one.seconds),
        Throughput(f"eventsourcing: the same, {CLIENTS} clients", COUNT, many.seconds),
    ]


async def eventsourcing_from_asyncio(root: Path) -> Throughput:
    """The peer as an asyncio server would call it: its API blocks (SQLite, fsync), so
    each command goes to a worker thread (``asyncio.to_thread``), one client at a time."""
    app = eventsourcing_app(root / "eventsourcing-async.db")
    ids = await asyncio.to_thread(lambda: [app.register(f"原州区{n}") for n in range(COUNT)])
    with Stopwatch() as one:
        for n, id in enumerate(ids):
            await asyncio.to_thread(app.card, id, f"检查 {n}")
    app.close()
    return Throughput("eventsourcing from asyncio (to_thread), 1 client", COUNT, one.seconds)


# --- Shuangjian --------------------------------------------------------------------------


async def shuangjian_cases(root: Path) -> list[Throughput]:
    store = SQLiteEventStore(root / "registry.db")
    await store.start()
    registry = Registry(
        store, RegionTree.load(), RegistryPolicy(), rectification_overdue=no_rectifications
    )
    ctx = CommandContext(actor="bench")
    ids = [f"i{n}" for n in range(COUNT)]
    try:
        with Stopwatch() as created:
            for n, id in enumerate(ids):
                await registry.handle(
                    RegisterInstitution(
                        id=id,
                        name=f"原州区培训机构{n}",
                        credit_code=credit_code(n),
                        region=REGION,
                        category="NON_SUBJECT",
                        non_subject_kind="ARTS",
                        mode="OFFLINE",
                    ),
                    ctx,
                )

        def card(id: str, reason: str) -> IssueWarningCard:
            return IssueWarningCard(id=id, color="YELLOW", reason=reason)

        with Stopwatch() as one:
            for n, id in enumerate(ids):
                await registry.handle(card(id, f"检查 {n}"), ctx)

        async def client(mine: list[str]) -> None:
            for n, id in enumerate(mine):
                await registry.handle(card(id, f"复查 {n}"), ctx)

        with Stopwatch() as many:
            await asyncio.gather(*(client(ids[k::CLIENTS]) for k in range(CLIENTS)))
    finally:
        await store.close()
    return [
        Throughput(
            "shuangjian: create one aggregate",
            COUNT,
            created.seconds,
            "eventsourcing: create one aggregate",
        ),
        Throughput(
            "shuangjian: load + command + append, 1 client",
            COUNT,
            one.seconds,
            "eventsourcing: load + command + append, 1 client",
        ),
        Throughput(
            f"shuangjian: the same, {CLIENTS} clients",
            COUNT,
            many.seconds,
            f"eventsourcing: the same, {CLIENTS} clients",
        ),
    ]


def _interleave(a: list[Throughput], b: list[Throughput]) -> list[Throughput]:
    return [row for pair in zip(a, b, strict=True) for row in pair]


async def main() -> None:
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="bench-command-") as tmp:
        root = Path(tmp)
        peers = await asyncio.to_thread(eventsourcing_cases, root)
        ours = await shuangjian_cases(root)
        served = await eventsourcing_from_asyncio(root)
    one_client = ours[1]
    rows = [
        *_interleave(peers, ours),
        served,
        Throughput(
            one_client.case + " (same)",
            one_client.ops,
            one_client.seconds,
            served.case,
        ),
    ]
    console.print(
        throughput_table(
            f"command path: one event per command, {COUNT:,} commands per case, SQLite WAL "
            "(eventsourcing: its default synchronous; shuangjian: FULL)",
            rows,
            unit="commands",
        )
    )
    one_ratio = ours[1].rate / peers[1].rate
    verdict(
        "command path ≥ 1× eventsourcing, one client",
        f"{one_ratio:.2f}× ({ours[1].rate:,.0f} against {peers[1].rate:,.0f} commands/s)",
        one_ratio >= 1,
        "the fsync and the writer thread's handoff",
    )
    many_ratio = ours[2].rate / peers[2].rate
    verdict(
        f"command path ≥ 3× eventsourcing, {CLIENTS} clients",
        f"{many_ratio:.2f}× ({ours[2].rate:,.0f} against {peers[2].rate:,.0f} commands/s)",
        many_ratio >= 3,
    )


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
