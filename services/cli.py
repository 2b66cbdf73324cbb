"""The ``shuangjian`` command."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import structlog
import typer
import uvicorn
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.text import Text

from services.bootstrap import (
    MODULES,
    Platform,
    build_platform,
    build_verifier,
    embedded_app,
    gateway_app,
    module_named,
    service_app,
)
from services.common.auth import NoSecret, Role, issue_token, load_secret
from services.common.config import Settings
from services.common.datadir import FAUST_DIR, DataDirInUse, hold, make_private_dir
from services.common.errors import ShuangjianError
from services.common.logging import configure_logging
from services.common.projection import Projection, stamp_versions
from services.common.regions import RegionTree
from services.demo import load_demo

app = typer.Typer(
    help="Shuangjian (双减): the supervision platform for off-campus training.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)
log = structlog.get_logger(__name__)

REFUSED = 2
"""Exit code of a command that refused to start (and changed nothing)."""


def refuse(message: str) -> NoReturn:
    """One line on stderr, exit code 2, no traceback."""
    errors.print(Text.assemble(("Error: ", "bold red"), message), soft_wrap=True)
    raise typer.Exit(REFUSED)


@contextlib.contextmanager
def data_dir_held(
    settings: Settings, command: str, *, exclusive: bool, hint: str = ""
) -> Iterator[None]:
    """Hold the data dir's lock (``services/common/datadir.py``) for the block, or refuse
    (with ``hint`` after the reason)."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(hold(settings.data_dir, command, exclusive=exclusive))
        except DataDirInUse as exc:
            refuse(f"{exc}{hint}")
        except OSError as exc:
            refuse(f"cannot use the data dir {settings.data_dir}: {exc.strerror or exc}")
        yield


def secret_in_data_dir(settings: Settings) -> bool:
    """Whether tokens are checked with the secret generated into the data dir."""
    return settings.jwt_secret is None and settings.jwks_url is None


def listen(host: str, port: int) -> socket.socket:
    """Bind the server's socket before anything starts, or refuse: a port in use is found
    before the platform starts and before anything says it is up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets that say
    # TCP, and without it every response waits ~40 ms (Nagle against delayed ACKs).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        refuse(f"cannot listen on {host}:{port}: {reason} (choose another with --port)")
    return sock


@app.callback()
def main() -> None:
    """Run `shuangjian COMMAND --help` for each command's options."""


async def load_demo_once(platform: Platform) -> None:
    """The demo goes in on the first start only; later starts keep what the data dir holds."""
    for store in platform.event_stores.values():
        if await store.max_position() > 0:
            console.print("Data dir already holds events: demo data not loaded again.")
            return
    with console.status("Loading demo data (固原, 天津, 重庆江北, 合肥庐阳)…"):
        count = await load_demo(platform.commands, platform.regions, settle=platform.settle)
        await platform.settle()
    console.print(f"Loaded {count} demo institutions.")


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the embedded SQLite files live.")
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Load demo data on the first start.")
    ] = False,
) -> None:
    """Run every service, the projections and the GraphQL gateway in one process."""
    overrides = {"host": host, "port": port, "data_dir": data_dir}
    settings = Settings.model_validate({k: v for k, v in overrides.items() if v is not None})
    configure_logging(settings.log_level, settings.log_format)
    # Refused while a rebuild (or anything else) holds the data dir, and on a port in use,
    # before anything starts.
    with data_dir_held(settings, "up", exclusive=True):
        sock = listen(settings.host, settings.port)
        platform = build_platform(settings)
        try:
            verifier = build_verifier(settings, platform.regions)
        except NoSecret as exc:  # an emptied secret file: say so, do not start
            refuse(str(exc))

        @asynccontextmanager
        async def running() -> AsyncIterator[None]:
            # Before the server, not in its lifespan: the start may replay millions of
            # events, and Ctrl-C must stop that too (uvicorn only hears it once it is up).
            try:
                await platform.start()
                if demo:
                    await load_demo_once(platform)
                yield
            finally:
                await platform.stop()

        def announce() -> None:
            """Once the server accepts connections, and only then."""
            url = f"http://{settings.host}:{sock.getsockname()[1]}/graphql"
            console.print(f"[bold green]Shuangjian is up.[/] GraphiQL: [link={url}]{url}[/link]")
            if verifier.secret:
                token = issue_token(
                    verifier.secret, "local-admin", role=Role.ADMIN, ttl=timedelta(hours=12)
                )
                console.print(
                    "A national admin token for the next 12 hours; in GraphiQL's Headers tab:"
                )
                console.print(
                    f'{{"Authorization": "Bearer {token}"}}', soft_wrap=True, highlight=False
                )
                # Read-only, and in the fragment, which browsers never send to a server.
                viewer = issue_token(
                    verifier.secret, "local-viewer", role=Role.VIEWER, ttl=timedelta(hours=12)
                )
                board = url.removesuffix("/graphql") + "/dashboard"
                console.print(
                    f"Dashboard (a national viewer for 12 hours): {board}#token={viewer}",
                    soft_wrap=True,
                    highlight=False,
                )
            console.print(f"Data dir: {settings.data_dir}  ·  stop with Ctrl-C")

        serve_app(
            embedded_app(platform, verifier),
            sock,
            on_ready=announce,
            around=running,
            stopped_early="Stopped before it was up. The next start goes on from where it was.",
        )


class QuietServer(uvicorn.Server):
    """Stops cleanly on Ctrl-C / SIGTERM, without re-raising the signal as a traceback.

    ``on_ready`` runs once the app has started and the socket accepts connections.
    """

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self.on_ready is not None:
            self.on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


# The services `serve` can run: every module of the composition root.
ServiceName = enum.StrEnum("ServiceName", [(m.name, m.name) for m in MODULES])  # type: ignore[misc]


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="Which service to run.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port of the command API (each service has its own).")
    ] = None,
) -> None:
    """Run one service: its command API (OpenAPI at /openapi.json), store and outbox relay.

    Configure the adapters with SHUANGJIAN_* variables (e.g. SHUANGJIAN_KAFKA_BOOTSTRAP).
    """
    settings = Settings.model_validate({})
    configure_logging(settings.log_level, settings.log_format)
    module = module_named(service.value)
    # Shared: services, projectors and gateways may share a data dir; up and rebuild not.
    keeps_files = settings.event_store == "sqlite" or secret_in_data_dir(settings)
    with (
        data_dir_held(settings, f"serve {module.name}", exclusive=False)
        if keeps_files
        else contextlib.nullcontext()
    ):
        sock = listen(host, port or module.port)
        serve_app(service_app(settings, module), sock)


@app.command()
def gateway(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the GraphQL endpoint.")] = 8000,
) -> None:
    """Run the GraphQL gateway alone: queries from the read store, commands to the services."""
    settings = Settings.model_validate({})
    configure_logging(settings.log_level, settings.log_format)
    keeps_files = settings.read_store == "sqlite" or secret_in_data_dir(settings)
    with (
        data_dir_held(settings, "gateway", exclusive=False)
        if keeps_files
        else contextlib.nullcontext()
    ):
        sock = listen(host, port)
        serve_app(gateway_app(settings), sock)


@app.command()
def project() -> None:
    """Run the projection worker (faust-streaming): Kafka topics into the read models."""
    from services.projector import run_projector

    settings = Settings.model_validate({})
    configure_logging(settings.log_level, settings.log_format)
    # Always in the data dir: faust keeps its own dir there, whatever the read store.
    with data_dir_held(settings, "project", exclusive=False):
        make_private_dir(settings.data_dir / FAUST_DIR)
        run_projector(settings)


def serve_app(
    asgi: Any,
    sock: socket.socket,
    *,
    on_ready: Callable[[], None] | None = None,
    around: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    stopped_early: str = "Stopped before it was up.",
) -> None:
    """Serve ``asgi`` on an already bound socket (see ``listen``), inside ``around`` (what
    must run before the server starts and stop after it has stopped)."""
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(asgi, host=host, port=port, log_level="warning")

    async def serve() -> None:
        async with around() if around is not None else contextlib.nullcontext():
            await QuietServer(config, on_ready).serve(sockets=[sock])

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:  # Ctrl-C before the server was up: asyncio.run's own
        console.print(stopped_early)


@app.command()
def token(
    region: Annotated[
        str | None, typer.Option(help="Region scope (e.g. 640400); omit for national.")
    ] = None,
    role: Annotated[
        Role,
        typer.Option(
            help="viewer reads; operator and admin also write; importer (history imports) "
            "and admin may also back-date beyond the window."
        ),
    ] = Role.VIEWER,
    ttl: Annotated[str, typer.Option(help="Lifetime: 30m, 8h, 7d.")] = "8h",
    subject: Annotated[
        str | None, typer.Option(help="Who the token is for (the audit actor).")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where the embedded secret lives.")] = None,
) -> None:
    """Print a bearer token signed with this installation's HS256 secret."""
    settings = Settings.model_validate({"data_dir": data_dir} if data_dir is not None else {})
    regions = RegionTree.load()
    try:
        scope = regions.canonical(region, "region") if region is not None else None
        lifetime = parse_ttl(ttl)
    except (ShuangjianError, ValueError) as exc:
        console.print(f"[red]{getattr(exc, 'message', exc)}[/]")
        raise typer.Exit(2) from None
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
    else:
        # Never a new secret here: the server would refuse what it signs.
        try:
            secret = load_secret(settings.data_dir)
        except NoSecret as exc:
            refuse(str(exc))
    who = subject or f"{role.value}@{scope or 'national'}"
    try:
        signed = issue_token(secret, who, role=role, region=scope, ttl=lifetime)
    except ValueError as exc:  # a subject no verifier would accept
        refuse(f"--subject: {exc}")
    print(signed)


def parse_ttl(text: str) -> timedelta:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"--ttl {text!r}: a whole number with s, m, h or d, e.g. 8h")
    return timedelta(**{units[unit]: int(number)})


@app.command()
def rebuild(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the embedded SQLite files live.")
    ] = None,
) -> None:
    """Drop every read model and rebuild it by replaying the events.

    Embedded: replays the event stores now; refused while anything else uses the data dir
    (`up`, `serve`, `gateway`, `project`). Distributed (SHUANGJIAN_KAFKA_BOOTSTRAP set):
    drops the read models and moves the projector group's offsets back to the start of
    the topics, refused while projector replicas run; the projector replays when it next
    starts. The documents come back identical (guarantee 6).
    """
    settings = Settings.model_validate({"data_dir": data_dir} if data_dir is not None else {})
    configure_logging(settings.log_level, settings.log_format)
    if settings.bus == "kafka":
        _reset_distributed(settings)
        return
    with data_dir_held(settings, "rebuild", exclusive=True):
        asyncio.run(_replay(settings))


def _reset_distributed(settings: Settings) -> None:
    from services.projector import ProjectorRunning, reset_for_replay

    try:
        with console.status("Resetting the read models and the projector's offsets…"):
            reset = asyncio.run(reset_for_replay(settings))
    except ProjectorRunning as exc:
        refuse(str(exc))
    for name in reset:
        console.print(f"Reset {name}.")
    console.print(
        "The projector replays every event into them when it starts: watch "
        "shuangjian_projection_lag_events fall to 0, and /readyz on the gateway."
    )


async def _replay(settings: Settings) -> None:
    platform = build_platform(settings)
    for store in platform.event_stores.values():
        await store.start()
    await platform.runner.prepare()
    try:
        done: list[Projection] = []
        for projection in platform.runner.projections:
            if projection in done:
                continue  # rebuilt with a projection it shares a collection with
            with console.status(f"Replaying into {projection.name}…"):
                group = await platform.runner.rebuild(projection)
            done += group
            for member in group:
                console.print(f"Rebuilt {member.name}.")
        await stamp_versions(platform.read_store, platform.runner.projections)
    finally:
        await platform.stop()


@app.command()
def schemas(
    out: Annotated[
        Path, typer.Option(help="The folder to write them to (exactly these files).")
    ] = Path("contract/schemas"),
) -> None:
    """Write the JSON Schemas of every command and event type (what district systems and
    consumers validate against); the checked-in contract/schemas must match the code."""
    from services.common.schemas import write_schemas

    try:
        changed = write_schemas(MODULES, out)
    except OSError as exc:
        refuse(f"cannot write the schemas to {out}: {exc.strerror or exc}")
    for path in changed:
        console.print(f"Wrote {out / path}." if (out / path).exists() else f"Removed {path}.")
    console.print(f"{out}: {'up to date' if not changed else f'{len(changed)} file(s) changed'}.")


import_app = typer.Typer(
    help="Import district spreadsheets (.xlsx, .csv) through the ordinary commands.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")


class ImportKind(enum.StrEnum):
    INSTITUTIONS = "institutions"
    INSPECTIONS = "inspections"
    ORDERS = "orders"


def _import_command(kind: ImportKind) -> None:
    @import_app.command(kind.value)
    def command(
        path: Annotated[Path, typer.Argument(help=".xlsx or .csv (UTF-8 or GB18030)")],
        region: Annotated[
            str | None,
            typer.Option(help="Scope the importer to a region; rows outside are FORBIDDEN."),
        ] = None,
        data_dir: Annotated[
            Path | None, typer.Option(help="Where the embedded SQLite files live.")
        ] = None,
        errors: Annotated[
            Path | None, typer.Option(help="The error file (default <name>.errors.csv beside it).")
        ] = None,
        progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    ) -> None:
        """Import PATH: exit 0 when no row failed, 1 when some did, 2 when the file was refused.

        Re-importing the same file changes nothing (a row's identity comes from its data).
        """
        from services.importing.cli import run_import

        settings = Settings.model_validate({"data_dir": data_dir} if data_dir is not None else {})
        configure_logging(settings.log_level, settings.log_format)
        with data_dir_held(settings, "import", exclusive=True):
            code = run_import(
                kind.value,
                path,
                settings,
                region=region,
                errors_path=errors,
                console=console,
                progress=progress,
            )
        raise typer.Exit(code)

    command.__name__ = f"import_{kind.value}"


for _kind in ImportKind:
    _import_command(_kind)


@app.command("bench-load")
def bench_load(
    institutions: Annotated[int, typer.Option(min=1, help="How many institutions.")],
    orders: Annotated[
        int | None, typer.Option(min=0, help="Prepaid orders (about 5 finance events each).")
    ] = None,
    finance_events: Annotated[
        int | None, typer.Option(min=0, help="Or: about this many finance events.")
    ] = None,
    province: Annotated[str, typer.Option(help="Spread over its districts.")] = "370000",
    seed: Annotated[int, typer.Option(help="The same seed gives the same data.")] = 2021,
    data_dir: Annotated[
        Path | None, typer.Option(help="An empty data dir to fill (default ./var).")
    ] = None,
    events_only: Annotated[
        bool,
        typer.Option(
            "--events-only", help="Write the events only: the next start builds the read models."
        ),
    ] = False,
) -> None:
    """Fill an empty data dir with a province-size data set, written as events straight
    into the event stores (services/loadgen.py), then bring every read model up to date."""
    from services.loadgen import Plan, districts_of, load, orders_for

    settings = Settings.model_validate({"data_dir": data_dir} if data_dir is not None else {})
    configure_logging("WARNING", settings.log_format)
    if orders is not None and finance_events is not None:
        refuse("--finance-events: give --orders or --finance-events, not both")
    if finance_events is not None:
        orders = orders_for(finance_events)
    try:
        plan = Plan(institutions, orders or 0, districts_of(RegionTree.load(), province), seed=seed)
        plan.check()
    except ShuangjianError as error:
        refuse(f"--{error.field or 'option'}: {error.message}")
    with data_dir_held(settings, "bench-load", exclusive=True):
        started = time.perf_counter()

        async def fill() -> None:
            platform = build_platform(settings)
            with Progress(console=console, transient=True) as bar:
                tasks: dict[str, TaskID] = {}

                def shown(phase: str, done: int, total: int | None) -> None:
                    if phase not in tasks:
                        tasks[phase] = bar.add_task(phase, total=total)
                    bar.update(tasks[phase], completed=done, total=total)

                try:
                    loaded = await load(
                        platform,
                        plan,
                        catch_up=not events_only,
                        progress=lambda service, done: shown(f"{service} events", done, None),
                        projecting=lambda service, done, end: shown(
                            f"projecting {service}", done, end
                        ),
                    )
                finally:
                    await platform.stop()
            seconds = time.perf_counter() - started
            events = sum(loaded.events.values())
            built = (
                "read models to be built at the next start"
                if events_only
                else ("read models up to date")
            )
            console.print(
                f"Loaded {loaded.institutions:,} institutions, {loaded.accounts:,} accounts and "
                f"{loaded.orders:,} orders: {events:,} events "
                f"({', '.join(f'{n} {c:,}' for n, c in loaded.events.items())}) in "
                f"{seconds:,.0f} s ({events / seconds:,.0f} events/s), {built}.",
                highlight=False,
            )

        try:
            asyncio.run(fill())
        except ShuangjianError as error:
            refuse(f"--{error.field or 'option'}: {error.message}")


report_app = typer.Typer(
    help="Reports for bureaus: the monthly report (每月通报).", no_args_is_help=True
)
app.add_typer(report_app, name="report")


class ReportFormat(enum.StrEnum):
    XLSX = "xlsx"
    PDF = "pdf"


@report_app.command("monthly")
def report_monthly(
    region: Annotated[str, typer.Option(help="The region reported on, e.g. 640400.")],
    month: Annotated[str, typer.Option(help="YYYY-MM, e.g. 2025-03.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    format: Annotated[
        ReportFormat | None, typer.Option(help="xlsx or pdf (default: from --out's suffix).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the embedded SQLite files live.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Ask a running gateway instead, e.g. http://127.0.0.1:8000."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="SHUANGJIAN_TOKEN", help="The bearer token for --url (its scope)."),
    ] = None,
) -> None:
    """Write the monthly report of REGION for MONTH: headline figures against the month
    before, the child regions ranked, twelve-month trends. Every number is what GraphQL
    answers for the same region and month. Exit 0 when written, 2 when refused."""
    from services.reports import cli as reports

    try:
        chosen = reports.choose_format(format.value if format else None, out)
    except ShuangjianError as error:
        refuse(f"--format: {error.message}")
    if url is not None:
        raise typer.Exit(
            reports.report_from_server(url, token, region, month, chosen, out, console)
        )
    settings = Settings.model_validate({"data_dir": data_dir} if data_dir is not None else {})
    configure_logging(settings.log_level, settings.log_format)
    running = "; or ask the running server: --url http://127.0.0.1:8000 --token TOKEN"
    with data_dir_held(settings, "report", exclusive=True, hint=running):
        code = reports.report_from_data_dir(settings, region, month, chosen, out, console)
    raise typer.Exit(code)


@import_app.command("template")
def import_template(
    kind: Annotated[ImportKind, typer.Argument(help="What the sheet holds.")],
    out: Annotated[Path, typer.Option("--out", help="The .xlsx to write.")],
) -> None:
    """Write a blank template: Chinese headers, a 说明 sheet, dropdowns for the enum columns."""
    from services.importing.cli import write_template_command

    raise typer.Exit(write_template_command(kind.value, out, console))
