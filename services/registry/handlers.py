"""The registry's command side: one handler per command, each a load-decide-append.

A handler gets the command and its ``Call`` (the registry, the institution's stream and
the business time) and says what the ``Institution`` should decide; ``COMMANDS`` maps
every command type to its handler and its HTTP verb, so the application, the HTTP API
and the remote client all follow the same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from services.common.application import Application
from services.common.commands import Call, CommandTable, Decision, Route
from services.common.ports import EventStore
from services.common.regions import RegionTree
from services.common.timeutil import utc_now
from services.registry.api import InstitutionState
from services.registry.domain.commands import (
    ApproveInstitution,
    ConvertToNonProfit,
    ExitInstitution,
    IssueWarningCard,
    ReclassifyInstitution,
    RegisterInstitution,
    ResumeInstitution,
    RevokeInstitution,
    SetListMark,
    SuspendInstitution,
)
from services.registry.domain.events import REGISTRY_EVENTS
from services.registry.domain.model import Institution
from services.registry.domain.rules import RegistryPolicy
from services.registry.projections import INSTITUTIONS

OverdueCheck = Callable[[str], Awaitable[bool]]


async def no_overdue_rectifications(institution_id: str) -> bool:
    """Until the inspections service reports overdue rectifications, there are none."""
    return False


class Registry(Application[Institution]):
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
        super().__init__(
            store, REGISTRY_EVENTS, Institution, COMMANDS, clock=clock, on_commit=on_commit
        )
        self.regions = regions
        self.policy = policy
        self.rectification_overdue = rectification_overdue


Act = Call[Registry]
Decide = Decision[Institution]


async def register(cmd: RegisterInstitution, o: Act) -> Decide:
    return lambda i: i.register(cmd, o.at, o.service.regions, o.service.policy)


async def approve(cmd: ApproveInstitution, o: Act) -> Decide:
    return lambda i: i.approve(cmd.license_no, o.at, o.service.policy)


async def convert_to_non_profit(cmd: ConvertToNonProfit, o: Act) -> Decide:
    return lambda i: i.convert_to_non_profit(o.at)


async def reclassify(cmd: ReclassifyInstitution, o: Act) -> Decide:
    return lambda i: i.reclassify(cmd.category, cmd.non_subject_kind, o.at, o.service.policy)


async def suspend(cmd: SuspendInstitution, o: Act) -> Decide:
    return lambda i: i.suspend(cmd.reason, o.at)


async def resume(cmd: ResumeInstitution, o: Act) -> Decide:
    return lambda i: i.resume(o.at)


async def revoke(cmd: RevokeInstitution, o: Act) -> Decide:
    return lambda i: i.revoke(cmd.reason, o.at)


async def exit_(cmd: ExitInstitution, o: Act) -> Decide:
    return lambda i: i.exit(cmd.reason, o.at)


async def set_list_mark(cmd: SetListMark, o: Act) -> Decide:
    return lambda i: i.set_list_mark(cmd.mark, cmd.reason, o.at)


async def issue_warning_card(cmd: IssueWarningCard, o: Act) -> Decide:
    overdue = await o.service.rectification_overdue(o.stream)
    return lambda i: i.issue_warning_card(
        cmd.color, cmd.reason, o.at, o.service.policy, rectification_overdue=overdue
    )


COMMANDS = CommandTable(
    resource="institutions",
    read_model=INSTITUTIONS.name,
    state=InstitutionState,
    routes=(
        Route(RegisterInstitution, register, summary="Register an institution", creates=True),
        Route(ApproveInstitution, approve, "approve", "审批准入"),
        Route(ConvertToNonProfit, convert_to_non_profit, "convert-to-non-profit", "营转非"),
        Route(ReclassifyInstitution, reclassify, "reclassify", "转型"),
        Route(SuspendInstitution, suspend, "suspend", "停业整顿"),
        Route(ResumeInstitution, resume, "resume"),
        Route(RevokeInstitution, revoke, "revoke", "取缔 (final)"),
        Route(ExitInstitution, exit_, "exit", "有序退出 (final)"),
        Route(SetListMark, set_list_mark, "list-mark", "黑白名单"),
        Route(IssueWarningCard, issue_warning_card, "warning-cards", "红黄牌"),
    ),
)
