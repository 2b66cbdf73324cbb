"""Process managers: the platform's cross-service reactions (DESIGN.md, "A service is a
module"). Each one consumes one service's events and sends another's commands; it reaches
the services only through their ``module.py``.

``PROCESSES`` is what the composition root (``services/bootstrap.py``) builds from, in
the embedded platform and in the projection workers.
"""

from __future__ import annotations

from services.common.process import ProcessSpec
from services.finance.module import MODULE as FINANCE
from services.inspections.module import MODULE as INSPECTIONS
from services.processes.risk import RiskWatch, risk_watch
from services.processes.warnings import WarningCards, warning_cards
from services.registry.module import MODULE as REGISTRY

__all__ = ["PROCESSES", "RiskWatch", "WarningCards"]

PROCESSES: tuple[ProcessSpec, ...] = (
    ProcessSpec(WarningCards.name, (REGISTRY.name, INSPECTIONS.name), warning_cards),
    ProcessSpec(RiskWatch.name, (REGISTRY.name, INSPECTIONS.name, FINANCE.name), risk_watch),
)
