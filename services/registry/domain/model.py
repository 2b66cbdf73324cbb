"""The registry's aggregates: ``Institution`` (registration and lifecycle, every rule
checked here) and ``CreditCode`` (who holds a 统一社会信用代码)."""

from __future__ import annotations

from datetime import datetime

from services.common.aggregate import Aggregate, DomainEvent, event_dispatch
from services.common.commands import choice, optional_choice
from services.common.errors import BadInput, Conflict, NotFound
from services.common.regions import RegionTree
from services.common.text import clean_text
from services.common.timeutil import local_date
from services.registry.domain.commands import RegisterInstitution
from services.registry.domain.events import (
    CREDIT_CODE_STREAM,
    STATUS_AFTER,
    CreditCodeReserved,
    InstitutionApproved,
    InstitutionConvertedToNonProfit,
    InstitutionExited,
    InstitutionReclassified,
    InstitutionRegistered,
    InstitutionResumed,
    InstitutionRevoked,
    InstitutionSuspended,
    ListMarkSet,
    SuspensionRecommended,
    WarningCardIssued,
)
from services.registry.domain.rules import (
    TERMINAL,
    TRANSITIONS,
    Category,
    ListMark,
    NonSubjectKind,
    RegistryPolicy,
    Status,
    TeachingMode,
    WarningColor,
    validate_credit_code,
)

NAME_MAX = 200
ADDRESS_MAX = 500
LICENSE_MAX = 64
REASON_MAX = 500


class Institution(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.registration: InstitutionRegistered | None = None
        self.registered_at: datetime | None = None
        self.status: Status | None = None
        self.license_no: str | None = None
        self.category: Category | None = None
        self.kind: NonSubjectKind | None = None
        self.non_profit = False
        self.list_mark = ListMark.NONE
        self.red_cards = 0

    # --- decisions -------------------------------------------------------------------

    def register(
        self,
        cmd: RegisterInstitution,
        at: datetime,
        regions: RegionTree,
        policy: RegistryPolicy,
    ) -> None:
        self.record_registration(registration_event(cmd, regions, policy), at)

    def record_registration(self, event: InstitutionRegistered, at: datetime) -> None:
        """Register with an already checked registration (``registration_event``)."""
        if self.registration is not None:
            if self.registration == event:
                return  # the same registration sent again: nothing to do
            raise Conflict(
                f"institution {self.id} is already registered with different details",
                field="id",
            )
        self._record(event, at)

    def approve(self, license_no: str, at: datetime, policy: RegistryPolicy) -> None:
        self._require_registered(at)
        license_no = _text(license_no, "license_no", LICENSE_MAX)
        if self.status is Status.APPROVED and self.license_no == license_no:
            return
        self._transition("approve")
        assert self.registered_at is not None
        if self.category is Category.SUBJECT and local_date(self.registered_at) >= (
            policy.policy_start
        ):
            raise Conflict(
                "no new SUBJECT institutions are approved after "
                f"{policy.policy_start.isoformat()} (双减 opinion); this one was registered on "
                f"{local_date(self.registered_at).isoformat()}",
                field="id",
            )
        self._record(InstitutionApproved(license_no=license_no), at)

    def convert_to_non_profit(self, at: datetime) -> None:
        """营转非. Converting an institution that is already non-profit changes nothing."""
        self._require_registered(at)
        if self.non_profit:
            return
        self._record(InstitutionConvertedToNonProfit(), at)

    def reclassify(
        self, category: str, kind: str | None, at: datetime, policy: RegistryPolicy
    ) -> None:
        """转型. Reclassifying into the current category changes nothing."""
        self._require_registered(at)
        new_category = choice(Category, category, "category")
        new_kind = optional_choice(NonSubjectKind, kind, "non_subject_kind")
        _check_kind(new_category, new_kind)
        if (new_category, new_kind) == (self.category, self.kind):
            return
        authority = policy.authority(self.region, new_category, new_kind)
        self._record(
            InstitutionReclassified(
                category=new_category, non_subject_kind=new_kind, authority=authority
            ),
            at,
        )

    def suspend(self, reason: str, at: datetime) -> None:
        self._require_registered(at)
        reason = _text(reason, "reason", REASON_MAX, multiline=True)
        self._transition("suspend")
        self._record(InstitutionSuspended(reason=reason), at)

    def resume(self, at: datetime) -> None:
        self._require_registered(at)
        self._transition("resume")
        self._record(InstitutionResumed(), at)

    def revoke(self, reason: str, at: datetime) -> None:
        self._require_registered(at)
        reason = _text(reason, "reason", REASON_MAX, multiline=True)
        self._transition("revoke")
        self._record(InstitutionRevoked(reason=reason), at)

    def exit(self, reason: str, at: datetime) -> None:
        self._require_registered(at)
        reason = _text(reason, "reason", REASON_MAX, multiline=True)
        self._transition("exit")
        self._record(InstitutionExited(reason=reason), at)

    def set_list_mark(self, mark: str, reason: str, at: datetime) -> None:
        """Black/white lists stay public after an institution closes, so terminal is fine."""
        self._require_registered(at, allow_terminal=True)
        new_mark = choice(ListMark, mark, "mark")
        reason = _text(reason, "reason", REASON_MAX, multiline=True)
        if new_mark is self.list_mark:
            return
        self._record(ListMarkSet(mark=new_mark, reason=reason), at)

    def issue_warning_card(
        self,
        color: str,
        reason: str,
        at: datetime,
        policy: RegistryPolicy,
        *,
        rectification_overdue: bool = False,
    ) -> None:
        """红黄牌. RED cards may recommend suspension; the recommendation is its own event."""
        self._require_registered(at)
        card = choice(WarningColor, color, "color")
        reason = _text(reason, "reason", REASON_MAX, multiline=True)
        self._record(WarningCardIssued(color=card, reason=reason), at)
        if card is not WarningColor.RED or self.status is not Status.APPROVED:
            return
        threshold = policy.red_cards_for_suspension
        if threshold and self.red_cards >= threshold:
            why = f"{self.red_cards} RED warning cards (threshold {threshold})"
        elif rectification_overdue and policy.red_while_overdue_recommends_suspension:
            why = "a RED warning card while a rectification is overdue"
        else:
            return
        self._record(SuspensionRecommended(reason=why), at)

    def holds(self, credit_code: str) -> bool:
        """Does this institution keep ``credit_code`` from anyone else registering it?"""
        return (
            self.registration is not None
            and self.registration.credit_code == credit_code
            and self.status not in TERMINAL
        )

    def _require_registered(
        self, at: datetime, *, allow_terminal: bool = False
    ) -> InstitutionRegistered:
        if self.registration is None:
            raise NotFound(f"no institution with id {self.id}", field="id")
        assert self.registered_at is not None
        if at < self.registered_at:
            raise BadInput(
                f"{at.isoformat()} is before the institution was registered "
                f"({self.registered_at.isoformat()})",
                field="occurred_at",
            )
        if self.status in TERMINAL and not allow_terminal:
            raise Conflict(
                f"institution {self.id} is {self.status}: a final state, nothing more can "
                "happen to it",
                field="id",
            )
        return self.registration

    def _transition(self, action: str) -> None:
        allowed = TRANSITIONS[action]
        if self.status not in allowed:
            names = " or ".join(sorted(s.value for s in allowed))
            raise Conflict(
                f"{action} needs an institution that is {names}; {self.id} is {self.status}",
                field="id",
            )

    # --- state -----------------------------------------------------------------------

    def _mutate(self, event: DomainEvent, occurred_at: datetime) -> None:
        self.status = STATUS_AFTER.get(type(event), self.status)
        super()._mutate(event, occurred_at)

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: InstitutionRegistered, at: datetime) -> None:
        self.registration = event
        self.registered_at = at
        self.region = event.region
        self.category = event.category
        self.kind = event.non_subject_kind
        self.non_profit = event.non_profit

    @when.register
    def _(self, event: InstitutionApproved, at: datetime) -> None:
        self.license_no = event.license_no

    @when.register
    def _(self, event: InstitutionConvertedToNonProfit, at: datetime) -> None:
        self.non_profit = True

    @when.register
    def _(self, event: InstitutionReclassified, at: datetime) -> None:
        self.category = event.category
        self.kind = event.non_subject_kind

    @when.register(InstitutionSuspended)
    @when.register(InstitutionResumed)
    @when.register(InstitutionRevoked)
    @when.register(InstitutionExited)
    def _(self, event: DomainEvent, at: datetime) -> None:
        pass  # a change of status only (STATUS_AFTER)

    @when.register
    def _(self, event: ListMarkSet, at: datetime) -> None:
        self.list_mark = event.mark

    @when.register
    def _(self, event: WarningCardIssued, at: datetime) -> None:
        if event.color is WarningColor.RED:
            self.red_cards += 1

    @when.register
    def _(self, event: SuspensionRecommended, at: datetime) -> None:
        pass  # a recommendation for people; it changes no state


def registration_event(
    cmd: RegisterInstitution, regions: RegionTree, policy: RegistryPolicy
) -> InstitutionRegistered:
    """Check a registration field by field and turn it into the fact to record."""
    name = _text(cmd.name, "name", NAME_MAX)
    credit_code = validate_credit_code(cmd.credit_code, "credit_code")
    region = regions.require_district(cmd.region, "region").code
    address = _text(cmd.address, "address", ADDRESS_MAX, multiline=True) if cmd.address else None
    category = choice(Category, cmd.category, "category")
    mode = choice(TeachingMode, cmd.mode, "mode")
    kind = optional_choice(NonSubjectKind, cmd.non_subject_kind, "non_subject_kind")
    _check_kind(category, kind)
    return InstitutionRegistered(
        name=name,
        credit_code=credit_code,
        region=region,
        address=address,
        category=category,
        non_subject_kind=kind,
        mode=mode,
        non_profit=cmd.non_profit,
        authority=policy.authority(region, category, kind),
    )


def _check_kind(category: Category, kind: NonSubjectKind | None) -> None:
    if category is Category.SUBJECT and kind is not None:
        raise BadInput("a SUBJECT institution has no nonSubjectKind", field="non_subject_kind")
    if category is Category.NON_SUBJECT and kind is None:
        raise BadInput(
            "a NON_SUBJECT institution needs its kind (SPORTS, ARTS, …)", field="non_subject_kind"
        )


def _text(value: str | None, field: str, limit: int, *, multiline: bool = False) -> str:
    """Free text in NFC, without control or bidi formatting characters (``clean_text``).

    Names and licence numbers are one line; addresses and reasons may have line breaks.
    """
    return clean_text(value, field, limit, multiline=multiline)


class CreditCode(Aggregate):
    """Who holds one 统一社会信用代码: a code identifies one organisation.

    Its stream is ``credit-code/<code>``; every registration reserves its code there
    (appending with the expected version, so of two racing registrations one wins)
    before it registers the institution. The event store writes one stream per commit,
    so the two are separate commits:

    * The holder keeps the code while it is registered with it and is not REVOKED or
      EXITED (``Institution.holds``, judged from the holder's own stream). A revoked or
      exited holder, or one that ended up registered with another code, frees it, and
      the next registration takes the reservation over.
    * A crash between the commits leaves a reservation whose institution has no
      stream: an unfinished claim, which carries the registration it was made for.
      Whoever finds it finishes it (``unfinished``): the same registration sent again
      simply goes on; a registration of another institution first writes the claimed
      registration to the claimant's stream, then is refused because the code is held.
      The crashed request, if it was only slow, then finds its registration written
      and answers as for a re-send. No claim is ever given up on a timer, so a slow
      request can never end up registered next to another holder of its code.
    """

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.holder: str | None = None
        self.claim: InstitutionRegistered | None = None
        self.claimed_at: datetime | None = None

    @property
    def code(self) -> str:
        return self.id.removeprefix(CREDIT_CODE_STREAM)

    def unfinished(self, holder: Institution) -> tuple[InstitutionRegistered, datetime] | None:
        """The registration (and its business time) a crash left reserved for ``holder``."""
        if holder.id != self.holder or holder.exists or self.claim is None:
            return None
        assert self.claimed_at is not None
        return self.claim, self.claimed_at

    def reserve(
        self,
        institution_id: str,
        registration: InstitutionRegistered,
        at: datetime,
        holder: Institution | None,
    ) -> None:
        """Claim the code for ``institution_id``.

        ``holder`` is the current holder as its own stream tells, when there is one
        other than the claimant; an unfinished claim must be finished first.
        """
        if registration.credit_code != self.code:
            raise ValueError(f"{registration.credit_code} is not the code of {self.id}")
        if self.holder == institution_id:
            if self.claim == registration:
                return  # this registration reserved it already
        elif self.holder is not None:
            if holder is None or holder.id != self.holder or not holder.exists:
                raise ValueError(f"reserving {self.id} needs its holder's registration")
            if holder.holds(self.code):
                raise Conflict(
                    f"credit code {self.code} is already held by another registered "
                    "institution (one that is neither revoked nor exited)",
                    field="credit_code",
                )
        self.region = registration.region
        self._record(
            CreditCodeReserved(institution_id=institution_id, registration=registration), at
        )

    @event_dispatch
    def when(self, event: DomainEvent, at: datetime) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: CreditCodeReserved, at: datetime) -> None:
        self.holder = event.institution_id
        self.claim = event.registration
        self.claimed_at = at
        self.region = event.registration.region
