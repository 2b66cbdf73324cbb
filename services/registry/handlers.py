"""The registry's command side: each command is one load-decide-append on an institution."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from services.common.application import Application, CommandContext, Outcome
from services.common.commands import business_time, entity_id
from services.common.errors import BadInput
from services.common.ports import EventStore
from services.common.regions import RegionTree
from services.common.timeutil import utc_now
from services.registry.domain.commands import (
    ApproveInstitution,
    ConvertToNonProfit,
    ExitInstitution,
    IssueWarningCard,
    ReclassifyInstitution,
    RegisterInstitution,
    RegistryCommand,
    ResumeInstitution,
    RevokeInstitution,
    SetListMark,
    SuspendInstitution,
)
from services.registry.domain.events import REGISTRY_EVENTS
from services.registry.domain.model import Institution
from services.registry.domain.rules import RegistryPolicy

OverdueCheck = Callable[[str], Awaitable[bool]]


async def no_overdue_rectifications(institution_id: str) -> bool:
    """Until the inspections service reports overdue rectifications, there are none."""
    return False


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
        rectification_overdue: OverdueCheck = no_overdue_rectifications,
    ) -> None:
        super().__init__(store, REGISTRY_EVENTS, Institution, clock=clock, on_commit=on_commit)
        self.regions = regions
        self.policy = policy
        self.rectification_overdue = rectification_overdue

    async def handle(self, cmd: RegistryCommand, ctx: CommandContext) -> Outcome[Institution]:
        if cmd.id is None and not isinstance(cmd, RegisterInstitution):
            raise BadInput("id is required", field="id")
        stream = entity_id(cmd.id)
        at = business_time(cmd.occurred_at, self.clock())
        decide = await self._decision(cmd, stream, at)
        return await self.execute(stream, decide, ctx)

    async def _decision(
        self, cmd: RegistryCommand, stream: str, at: datetime
    ) -> Callable[[Institution], None]:
        policy = self.policy
        match cmd:
            case RegisterInstitution():
                return lambda i: i.register(cmd, at, self.regions, policy)
            case ApproveInstitution(license_no=license_no):
                return lambda i: i.approve(license_no, at, policy)
            case ConvertToNonProfit():
                return lambda i: i.convert_to_non_profit(at)
            case ReclassifyInstitution(category=category, non_subject_kind=kind):
                return lambda i: i.reclassify(category, kind, at, policy)
            case SuspendInstitution(reason=reason):
                return lambda i: i.suspend(reason, at)
            case ResumeInstitution():
                return lambda i: i.resume(at)
            case RevokeInstitution(reason=reason):
                return lambda i: i.revoke(reason, at)
            case ExitInstitution(reason=reason):
                return lambda i: i.exit(reason, at)
            case SetListMark(mark=mark, reason=reason):
                return lambda i: i.set_list_mark(mark, reason, at)
            case IssueWarningCard(color=color, reason=reason):
                overdue = await self.rectification_overdue(stream)
                return lambda i: i.issue_warning_card(
                    color, reason, at, policy, rectification_overdue=overdue
                )
        raise TypeError(f"not a registry command: {cmd!r}")
