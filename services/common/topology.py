"""Every Kafka topic of the platform, named in one place.

One topic per service carries its events (``<prefix>.<service>.events``, key = the
aggregate id); unusable events go to ``<prefix>.dead-letters``.
"""

from __future__ import annotations

from dataclasses import dataclass


def events_topic(prefix: str, service: str) -> str:
    """The topic that carries one service's events."""
    return f"{prefix}.{service}.events"


def dead_letter_topic(prefix: str) -> str:
    """Where consumers park events they cannot process (Guarantee 7)."""
    return f"{prefix}.dead-letters"


# Topic configuration the platform creates its topics with. The events are kept for good:
# a read model is rebuilt by replaying its topics from the start (``shuangjian rebuild``),
# so nothing may age out of them. Dead letters too: each one is a case for an operator.
TOPIC_CONFIG = {"retention.ms": "-1", "cleanup.policy": "delete"}


@dataclass(frozen=True)
class Topology:
    """The topics of a deployment: its prefix and the services it runs."""

    prefix: str
    services: tuple[str, ...]

    def events(self, service: str) -> str:
        if service not in self.services:
            raise KeyError(f"no service {service!r} in this deployment")
        return events_topic(self.prefix, service)

    @property
    def event_topics(self) -> list[str]:
        return [events_topic(self.prefix, s) for s in self.services]

    @property
    def dead_letters(self) -> str:
        return dead_letter_topic(self.prefix)

    @property
    def group(self) -> str:
        """The projection workers' consumer group."""
        return f"{self.prefix}-projector"
