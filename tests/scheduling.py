"""How ``make test`` spreads the suite over pytest-xdist workers (``-n 3 --dist loadfile``).

Two cores, and two kinds of test:

* *foreground* modules (``FOREGROUND``): real Kafka brokers, multi-process deployments,
  ``shuangjian up`` and its commands as a user runs them. Their outcome depends on other
  processes keeping up within wall-clock bounds (a mutation's read-your-writes waits 5 s
  for the projector; brokers' sessions time out; ``up --demo`` has 60 s to load the demo
  and answer), so they must not be starved of CPU;
* everything else, mostly CPU-bound work in the test process (properties, fuzzing, 10,000
  commands) that only needs to get done.

So the first worker (``gw0``) runs the foreground modules, one after the other as without
xdist, and the other workers run the rest at a lower CPU priority (``BACKGROUND_NICE``):
they take what the foreground leaves idle, and give it back at once when it needs it.
Once the foreground modules are done, ``gw0`` takes background modules too. Two background
workers on two cores: each is mostly one busy thread, and the foreground often waits
(on brokers, on timeouts), so two keep both cores busy where one would leave one idle.

Every module runs whole on one worker, in order (as ``--dist loadfile``): its module-scoped
fixtures are set up once, and its later tests may check what earlier ones left. Each worker
has its own session fixtures (its own Kafka broker and FerretDB).
"""

from __future__ import annotations

import os
from typing import Any

from xdist.scheduler import LoadFileScheduling

FOREGROUND = ("tests/brokers/", "tests/e2e/", "tests/kafka/")
FOREGROUND_WORKER = "gw0"
BACKGROUND_NICE = 10


def is_foreground(module: str) -> bool:
    return module.startswith(FOREGROUND)


class ForegroundFirst(LoadFileScheduling):
    """``--dist loadfile``, but the foreground modules go to ``gw0`` only (before anything
    else), and the other workers take only background modules."""

    def _foreground_worker_alive(self) -> bool:
        return any(node.gateway.id == FOREGROUND_WORKER for node in self.nodes)

    def _eligible(self, node: Any) -> str | None:
        """The first module in the queue this worker should run, or None."""
        if node.gateway.id == FOREGROUND_WORKER:
            foreground = [scope for scope in self.workqueue if is_foreground(scope)]
            return foreground[0] if foreground else next(iter(self.workqueue), None)
        if not self._foreground_worker_alive():  # it crashed: nobody else would run them
            return next(iter(self.workqueue), None)
        return next((scope for scope in self.workqueue if not is_foreground(scope)), None)

    def _assign_work_unit(self, node: Any) -> None:
        scope = self._eligible(node)
        if scope is None:
            return
        work_unit = self.workqueue.pop(scope)
        self.assigned_work.setdefault(node, {})[scope] = work_unit
        collection = self.registered_collections[node]
        node.send_runtest_some(
            [collection.index(nodeid) for nodeid, done in work_unit.items() if not done]
        )

    def _reschedule(self, node: Any) -> None:
        if node.shutting_down:
            return
        if self._eligible(node) is None:  # nothing (more) for this worker: it may finish
            node.shutdown()
            return
        if self._pending_of(self.assigned_work[node]) > 2:  # xdist's low-water mark
            return
        self._assign_work_unit(node)


def lower_priority() -> None:
    """Called in a background worker: it, and what it starts, yield the CPU."""
    os.nice(BACKGROUND_NICE)
