"""The registry's command side: one handler per command, each a load-decide-append.

A handler gets the command and its ``Call`` (the registry, the institution's stream and
the business time) and says what the ``Institution`` should decide; ``COMMANDS`` maps
every command type to its handler and its HTTP verb, so the application, the HTTP API
and the remote client all follow the same table.

A registration is the one command that writes two streams. Its decision
(``Registration``) carries the checked registration, and ``Registry.execute`` first
reserves the credit code in the code's own stream (``CreditCode``: race-free, with the
expected version), then registers the institution. Nothing else reads reservations (no
read model, no audit entry).

A crash between the two commits leaves a ``CreditCodeReserved`` naming an institution
whose stream is empty, carrying the registration it was made for. It heals on the next
registration of that code: the same registration sent again reuses the reservation and
registers; any other first writes the claimed registration (as its sender's, at its
business time: ``_finish``) and is then refused, the code being held. A claim is never
dropped for being old, so a request that was merely slow cannot end up registered next
to another holder of its code (see ``CreditCode``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.application import (
    BACKDATE_WINDOW,
    DEFAULT_RETRY,
    Application,
    CommandContext,
    Outcome,
    RetryPolicy,
)
from services.common.auth import SYSTEM
from services.common.commands import Call, CommandTable, Decision, Route, require_recent
from services.common.envelope import Envelope
from services.common.errors import ConcurrencyConflict, Conflict
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
from services.registry.domain.events import (
    REGISTRY_EVENTS,
    InstitutionRegistered,
    credit_code_stream,
)
from services.registry.domain.model import CreditCode, Institution, registration_event
from services.registry.domain.rules import RegistryPolicy
from services.registry.projections import INSTITUTIONS

OverdueCheck = Callable[[str], Awaitable[bool]]
"""Has the institution a rectification order past its deadline? (The inspections
service's published lookup, over its read model, as of the application's clock.)"""


class Registry(Application[Institution]):
    reserve_attempts = 5  # rounds of deciding a reservation again after losing a race

    def __init__(
        self,
        store: EventStore,
        regions: RegionTree,
        policy: RegistryPolicy,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] | None = None,
        rectification_overdue: OverdueCheck,
        retry: RetryPolicy = DEFAULT_RETRY,
        backdate_window: timedelta = BACKDATE_WINDOW,
    ) -> None:
        super().__init__(
            store,
            REGISTRY_EVENTS,
            Institution,
            COMMANDS,
            clock=clock,
            on_commit=on_commit,
            retry=retry,
            backdate_window=backdate_window,
        )
        self.regions = regions
        self.policy = policy
        self.rectification_overdue = rectification_overdue

    async def execute(
        self,
        stream: str,
        decide: Callable[[Institution], None],
        ctx: CommandContext,
        *,
        operation: str,
    ) -> Outcome[Institution]:
        """Every command; a new registration first holds its credit code."""
        if not isinstance(decide, Registration) or not await self._reserve(stream, decide, ctx):
            return await super().execute(stream, decide, ctx, operation=operation)
        outcome = await super().execute(stream, decide, ctx, operation=operation)
        if not outcome.events:
            # It was not registered a moment ago, and now is, as this command says: a
            # racing registration of the same code finished this command's claim (or the
            # same registration was sent twice at once). Answer with what registered it,
            # so the answer waits for the read model like any other registration.
            outcome.events = await self.store.read_stream(stream, to_version=1)
        return outcome

    async def _reserve(self, stream: str, claim: Registration, ctx: CommandContext) -> bool:
        """Reserve the claim's credit code for institution ``stream``, or refuse.

        Only a registration the command path would store is reserved for: a caller who
        may not write it (a viewer, another region, back-dating without the role) is
        refused here, before anything is written. False when the institution is
        registered already: a re-send (a no-op) or a different one (refused).
        """
        if (await self.load(stream)).registration is not None:
            return False
        ctx.principal.require_write(claim.event.region)
        if not ctx.principal.role.backdates:
            require_recent(claim.at, self.clock(), self.backdate_window)
        code_stream = credit_code_stream(claim.event.credit_code)

        def free_code(stored: list[Envelope]) -> list[Envelope]:
            """The common case in one trip: a code nobody else holds, reserved."""
            code = self._code(code_stream, stored)
            if code.holder is not None and code.holder != stream:
                raise _HeldElsewhere
            loaded_at = code.version
            code.reserve(stream, claim.event, claim.at, None)
            changes = code.collect()
            if not changes:
                return []
            # Reserving again is a no-op by itself: no ids from an idempotency key.
            return self._envelopes(code_stream, loaded_at, changes, ctx, None)

        for _ in range(self.reserve_attempts):
            with contextlib.suppress(_HeldElsewhere):
                try:
                    reserved = await self.store.decide_and_append(code_stream, free_code)
                    if reserved and self.on_commit is not None:
                        self.on_commit()
                    return True
                except ConcurrencyConflict:
                    continue  # another registration of this code came first: decide again
            # Another institution holds it: see whether that claim was ever finished.
            code, last = await self._load_code(code_stream)
            holder = None
            if code.holder is not None and code.holder != stream:
                holder = await self.load(code.holder)
                unfinished = code.unfinished(holder)
                if unfinished is not None:
                    assert last is not None
                    await self._finish(holder.id, *unfinished, last)
                    continue
            loaded_at = code.version
            code.reserve(stream, claim.event, claim.at, holder)
            changes = code.collect()
            if not changes:
                return True
            try:
                await self.store.append(
                    # Reserving again is a no-op by itself: no ids from an idempotency key.
                    self._envelopes(code_stream, loaded_at, changes, ctx, None),
                    expected_version=loaded_at,
                )
            except ConcurrencyConflict:
                continue  # another registration of this code came first: decide again
            if self.on_commit is not None:
                self.on_commit()
            return True
        raise ConcurrencyConflict(
            f"credit code {claim.event.credit_code} is being registered concurrently; "
            "send the registration again",
            field="credit_code",
        )

    async def _finish(
        self, institution: str, event: InstitutionRegistered, at: datetime, claim: Envelope
    ) -> None:
        """Write the registration an unfinished claim was made for, as its sender asked."""
        sender = CommandContext(
            principal=SYSTEM,
            actor=claim.actor,
            correlation_id=claim.correlation_id,
            causation_id=str(claim.id),
        )
        # A Conflict means it was registered meanwhile, maybe otherwise: the caller
        # decides again on what is stored.
        with contextlib.suppress(Conflict):
            await super().execute(
                institution, Registration(event, at), sender, operation="RegisterInstitution"
            )

    async def _load_code(self, stream: str) -> tuple[CreditCode, Envelope | None]:
        stored = await self.store.read_stream(stream)
        return self._code(stream, stored), stored[-1] if stored else None

    def _code(self, stream: str, stored: list[Envelope]) -> CreditCode:
        return CreditCode(stream).replay([(self.events.decode(e), e.occurred_at) for e in stored])


class _HeldElsewhere(Exception):
    """The credit code is held for another institution (``Registry._reserve``)."""


Act = Call[Registry]
Decide = Decision[Institution]


@dataclass(frozen=True)
class Registration:
    """The decision of a registration: the checked fact, and the code it must hold first."""

    event: InstitutionRegistered
    at: datetime

    def __call__(self, institution: Institution) -> None:
        institution.record_registration(self.event, self.at)


async def register(cmd: RegisterInstitution, o: Act) -> Decide:
    # Checked before anything is written: the credit code is reserved only for a
    # registration that passes every rule.
    return Registration(registration_event(cmd, o.service.regions, o.service.policy), o.at)


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
