"""What the platform itself sends and emits validates against the published schemas.

The demo data goes through an embedded platform, and after it the few commands the demo
never sends (``AFTER_THE_DEMO``); every command (serialised as the platform's client
serialises it) must pass its command schema, and every event in every service's store (as
``Envelope.to_json`` puts it on Kafka) its event schema, with formats checked: a schema
stricter than the platform would refuse real traffic. Every event type must turn up, or
its schema would be published unchecked.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from services.bootstrap import Platform
from services.common.application import CommandContext, Outcome
from services.common.commands import Command
from services.common.module import CommandService
from services.common.schemas import documents
from services.common.timeutil import local_date, utc_now
from services.demo import TIANJIN, load_demo
from services.finance.domain.commands import (
    AnswerRefundRequest,
    AssessRisk,
    ReportLessonsDelivered,
    SettleDue,
)
from services.registry.domain.commands import ResumeInstitution

PAGE = 500
# Demo records the demo leaves alone (services/demo.py): the suspended 合肥庐阳 institution,
# and the 天津 order whose parent asked for a refund.
AFTER_THE_DEMO: list[Command] = [
    ResumeInstitution(id="demo-340103-053"),
    ReportLessonsDelivered(id="demo-order-0046", lessons=1),
    AnswerRefundRequest(id="demo-order-0046", request=1, accept=False, note="已协商"),
    SettleDue(id="demo-order-0046", today=local_date(utc_now())),
    AssessRisk(id=f"demo-{TIANJIN[0]}-001"),
]


def _rfc3339(value: object) -> bool:
    """``date-time`` as RFC 3339 says: with its offset (jsonschema checks it only with an
    optional package; this is the check without it)."""
    if not isinstance(value, str) or "T" not in value.upper():
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


FORMATS = FormatChecker()
FORMATS.checks("date-time")(_rfc3339)


class Recording:
    """The platform's command side, noting every command that passes through."""

    def __init__(self, inner: CommandService) -> None:
        self.inner = inner
        self.sent: list[Command] = []

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        self.sent.append(cmd)
        return await self.inner.handle(cmd, ctx)


def _validators(platform: Platform) -> dict[str, Draft202012Validator]:
    published = documents(platform.modules)
    return {
        path: Draft202012Validator(schema, format_checker=FORMATS)
        for path, schema in published.items()
        if path != "index.json"
    }


async def test_the_demo_validates_against_the_published_schemas(platform: Platform) -> None:
    validators = _validators(platform)
    commands = Recording(platform.commands)
    await load_demo(commands, platform.regions, settle=platform.settle)
    for command in AFTER_THE_DEMO:
        await commands.handle(command, CommandContext(actor="schema-test"))
    await platform.settle()

    seen_commands: Counter[str] = Counter()
    for command in commands.sent:
        module = next(m for m in platform.modules if type(command) in m.command_types)
        _, body = module.command_types[type(command)].request(command)
        if command.id is not None:
            body["id"] = command.id
        path = f"commands/{module.name}/{type(command).__name__}.json"
        errors = [f"{e.json_path}: {e.message}" for e in validators[path].iter_errors(body)]
        assert not errors, (path, body, errors)
        seen_commands[path] += 1

    seen_events: Counter[str] = Counter()
    for name, store in platform.event_stores.items():
        after = 0
        while page := await store.read_all(after_position=after, limit=PAGE):
            for event in page:
                path = f"events/{name}/{event.name}.v{event.schema_version}.json"
                assert path in validators, f"{event.type} v{event.schema_version} unpublished"
                body = json.loads(event.to_json())
                errors = [f"{e.json_path}: {e.message}" for e in validators[path].iter_errors(body)]
                assert not errors, (path, body, errors)
                seen_events[path] += 1
            after = page[-1].position or after + len(page)
    published_events = {path for path in validators if path.startswith("events/")}
    unchecked = sorted(published_events - seen_events.keys())
    assert not unchecked, f"no event checked against {unchecked}: extend AFTER_THE_DEMO"
    published_commands = {path for path in validators if path.startswith("commands/")}
    assert not sorted(published_commands - seen_commands.keys())
