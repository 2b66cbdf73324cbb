"""The registry's command side: one method per command, each a load-decide-append."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.common.application import Application, CommandContext, Outcome
from services.common.commands import business_time, entity_id
from services.common.ports import EventStore
from services.common.regions import RegionTree
from services.common.timeutil import utc_now
from services.registry.domain.commands import ApproveInstitution, RegisterInstitution
from services.registry.domain.events import REGISTRY_EVENTS
from services.registry.domain.model import Institution
from services.registry.domain.rules import RegistryPolicy


class Registry(Application[Institution]):
    service = "registry"

    def __init__(
        self,
        store: EventStore,
        regions: RegionTree,
        policy: RegistryPolicy,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(store, REGISTRY_EVENTS, Institution, clock=clock, on_commit=on_commit)
        self.regions = regions
        self.policy = policy

    async def register(self, cmd: RegisterInstitution, ctx: CommandContext) -> Outcome[Institution]:
        stream = entity_id(cmd.id)
        at = business_time(cmd.occurred_at, self.clock())
        return await self.execute(
            stream, lambda inst: inst.register(cmd, at, self.regions, self.policy), ctx
        )

    async def approve(self, cmd: ApproveInstitution, ctx: CommandContext) -> Outcome[Institution]:
        at = business_time(cmd.occurred_at, self.clock())
        return await self.execute(
            entity_id(cmd.id), lambda inst: inst.approve(cmd.license_no, at, self.policy), ctx
        )
