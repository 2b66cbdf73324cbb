"""The registry as a module of the platform, and the names other layers may use of it.

``MODULE`` is what ``services/bootstrap.py`` lists. The gateway and other entry points
reach the registry only through this file and ``views.py``: the commands they send and
the vocabulary (enums) they show are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from services.common.envelope import Envelope
from services.common.module import CommandService, Lookup, ServiceModule, Wiring
from services.common.ports import ReadStore
from services.common.projection import Projection
from services.common.regions import RegionTree
from services.registry import views
from services.registry.api import DESCRIPTION
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
from services.registry.domain.events import REGISTRY_EVENTS, SERVICE, is_credit_code_stream
from services.registry.domain.rules import (
    Category,
    ListMark,
    NonSubjectKind,
    RegistryPolicy,
    Status,
    TeachingMode,
    WarningColor,
)
from services.registry.handlers import COMMANDS, Registry
from services.registry.projections import InstitutionsProjection
from services.registry.settings import RegistrySettings

__all__ = [
    "MODULE",
    "ApproveInstitution",
    "Category",
    "ConvertToNonProfit",
    "ExitInstitution",
    "IssueWarningCard",
    "ListMark",
    "NonSubjectKind",
    "ReclassifyInstitution",
    "RegisterInstitution",
    "Registry",
    "RegistryCommand",
    "RegistryPolicy",
    "RegistrySettings",
    "ResumeInstitution",
    "RevokeInstitution",
    "SetListMark",
    "Status",
    "SuspendInstitution",
    "TeachingMode",
    "WarningColor",
]


INSTITUTION_REGIONS = "registry.institution_regions"
RECTIFICATION_OVERDUE = "inspections.rectification_overdue"


async def no_rectifications(institution_id: str) -> bool:
    """A deployment without the inspections service has no rectification orders at all."""
    return False


def application(wiring: Wiring[RegistrySettings]) -> CommandService:
    return Registry(
        wiring.store,
        wiring.regions,
        wiring.settings.policy(),
        rectification_overdue=wiring.lookup(RECTIFICATION_OVERDUE, absent=no_rectifications),
        **wiring.options,
    )


def regions_lookup(store: ReadStore, clock: Callable[[], datetime]) -> Lookup:
    async def institution_regions(ids: Sequence[str]) -> dict[str, str]:
        return await views.institution_regions(store, ids)

    return institution_regions


def projections(regions: RegionTree, settings: RegistrySettings) -> Sequence[Projection]:
    return [InstitutionsProjection(regions, settings.policy())]


def institution_of(event: Envelope) -> Sequence[str]:
    """A registry event is about the institution whose stream it is in; a credit code's
    reservation (stream ``credit-code/<code>``) is about none."""
    return () if is_credit_code_stream(event.stream) else (event.stream,)


MODULE = ServiceModule(
    name=SERVICE,
    description=DESCRIPTION,
    events=REGISTRY_EVENTS,
    settings=RegistrySettings,
    commands=(COMMANDS,),
    application=application,
    projections=projections,
    port=8001,
    audit_subject=institution_of,
    provides={INSTITUTION_REGIONS: regions_lookup},
)
