"""The ``kittiwake`` command: serve, accounts, numbers, migrate.

Data commands work on the same data directory as a running ``serve`` (SQLite in WAL mode, every write
in a ``BEGIN IMMEDIATE`` transaction). Bad arguments get a one-line error and exit status 2, and nothing
is written.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kittiwake import __version__, provisioning
from kittiwake.clock import SystemClock
from kittiwake.config import (
    Settings,
    config_path_from_env,
    data_dir_from_env,
    database_url_from_env,
    load_config,
    parse_roles,
)
from kittiwake.domain import NumberKind, SidPrefix, is_sid, rfc2822
from kittiwake.errors import ConfigError, TwilioError
from kittiwake.models import Account, Message, PhoneNumber
from kittiwake.runtime import opened_store
from kittiwake.runtime import serve as run_server
from kittiwake.store.base import FullStore, NumberFilter, PageRequest, Store

T = TypeVar("T")

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: $KITTIWAKE_DATA_DIR, else ./kittiwake-data).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
database_url_option = click.option(
    "--database-url",
    default=None,
    help="PostgreSQL instead of the data directory, e.g. postgresql://user@host/db (default: $KITTIWAKE_DATABASE_URL).",
)


def _settings(data_dir: Path | None, database_url: str | None = None, **overrides: Any) -> Settings:
    url = database_url or database_url_from_env()
    if url is not None and not url.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter("must be a postgresql:// URL", param_hint="--database-url")
    return Settings(data_dir=data_dir or data_dir_from_env(), database_url=url, **overrides)


def _run(settings: Settings, work: Callable[[FullStore], Awaitable[T]]) -> T:
    async def main() -> T:
        async with opened_store(settings) as store:
            return await work(store)

    return asyncio.run(main())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kittiwake")
def cli() -> None:
    """Kittiwake: a self-hosted SMS gateway that speaks Twilio's 2010-04-01 REST API."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free).")
@data_dir_option
@database_url_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML configuration file (default: $KITTIWAKE_CONFIG).",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
)
@click.option(
    "--role", default="all", show_default=True, help="all, or a comma-separated list of api, dispatcher, webhooks."
)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="API processes on this machine."
)
@click.option("--reuse-port", is_flag=True, hidden=True, help="Bind the port with SO_REUSEPORT (used by --workers).")
@click.option("--no-bootstrap", "bootstrap", is_flag=True, default=True, flag_value=False, hidden=True)
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    database_url: str | None,
    config_file: Path | None,
    log_level: str,
    role: str,
    workers: int,
    reuse_port: bool,
    bootstrap: bool,
) -> None:
    """Run the gateway: by default the API, the dispatcher (with the simulated carrier) and the webhook
    workers in one process. With PostgreSQL, roles can be split over processes and machines."""
    roles = parse_roles(role)
    settings = _settings(
        data_dir, database_url, host=host, port=port, log_level=log_level, roles=roles,
        reuse_port=reuse_port or workers > 1, bootstrap=bootstrap,
    )  # fmt: skip
    config_file = config_file or config_path_from_env()
    if config_file is not None:
        settings = load_config(config_file, settings)
    if workers > 1:
        if "api" not in roles:
            raise click.BadParameter(
                "--workers runs API processes: use it with --role all or api", param_hint="--workers"
            )
        from kittiwake.supervisor import run_with_api_workers

        run_with_api_workers(settings, workers, config_file)
        return
    with asyncio.Runner(loop_factory=_fast_loop_factory()) as runner:
        runner.run(run_server(settings))


def _fast_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where installed (uvicorn[standard] brings it on Linux): ~10-15% more creates/s here."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


@cli.command()
@data_dir_option
@database_url_option
def migrate(data_dir: Path | None, database_url: str | None) -> None:
    """Create or upgrade the database schema (serve also does this on start)."""
    settings = _settings(data_dir, database_url)

    async def nothing(store: Store) -> None:
        return None

    _run(settings, nothing)
    where = "the PostgreSQL database" if settings.database_url else str(settings.database_path)
    click.echo(f"Schema is up to date in {where}")


@cli.command("migrate-data")
@click.option("--from", "source", required=True, help="sqlite:DIR, the data directory to copy (serve stopped).")
@click.option("--to", "target", required=True, help="postgresql://... , an empty database.")
def migrate_data_command(source: str, target: str) -> None:
    """Move an embedded deployment (SQLite) to PostgreSQL, every message included."""
    if not source.startswith("sqlite:"):
        raise click.BadParameter("must be sqlite:DIR", param_hint="--from")
    if not target.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter("must be a postgresql:// URL", param_hint="--to")
    from kittiwake.store.migrate_data import migrate_data

    copied = migrate_data(Path(source.removeprefix("sqlite:")), target)
    click.echo("Copied " + ", ".join(f"{n} {table}" for table, n in copied.items() if n) + ".")


@cli.group()
def accounts() -> None:
    """Create and list accounts."""


def _account_json(a: Account) -> dict[str, Any]:
    return {
        "sid": a.sid,
        "auth_token": a.auth_token,
        "friendly_name": a.friendly_name,
        "status": a.status.value,
        "owner_account_sid": a.owner_account_sid,
        "date_created": rfc2822(a.date_created),
    }


@accounts.command("create")
@click.option("--name", default=None, help="Friendly name.")
@data_dir_option
@database_url_option
@json_option
def accounts_create(name: str | None, data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """Create an account and print its SID and auth token."""
    if name is not None and len(name) > 64:
        raise click.BadParameter("at most 64 characters", param_hint="--name")
    settings = _settings(data_dir, database_url)
    account = _run(settings, lambda store: provisioning.create_account(store, SystemClock(), name))
    if as_json:
        click.echo(json.dumps(_account_json(account)))
    else:
        click.echo(f"Account SID: {account.sid}\nAuth token:  {account.auth_token}")


@accounts.command("list")
@data_dir_option
@database_url_option
@json_option
def accounts_list(data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """List every account (the operator's view: all accounts in the data directory)."""
    found = _run(_settings(data_dir, database_url), lambda store: store.all_accounts())
    if as_json:
        click.echo(json.dumps([_account_json(a) for a in found]))
        return
    for a in found:
        owner = "" if a.owner_account_sid == a.sid else f" (subaccount of {a.owner_account_sid})"
        click.echo(f"{a.sid}  {a.status.value:9}  {a.friendly_name}{owner}")


@cli.group()
def numbers() -> None:
    """Provision and list an account's numbers."""


def _number_json(n: PhoneNumber) -> dict[str, Any]:
    return {
        "sid": n.sid,
        "account_sid": n.account_sid,
        "phone_number": n.phone_number,
        "kind": n.kind.value,
        "sms_url": n.sms_url,
        "sms_method": n.sms_method,
    }


def _account_option() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--account", "account_sid", required=True, help="Account SID (AC…).")


def _check_account_sid(account_sid: str) -> None:
    if not is_sid(account_sid, SidPrefix.ACCOUNT):
        raise click.BadParameter(f"{account_sid!r} is not an account SID", param_hint="--account")


@numbers.command("add")
@_account_option()
@click.argument("number")
@click.option("--short-code", is_flag=True, help="NUMBER is a short code (3-8 digits).")
@click.option("--sms-url", default=None, help="URL requested when this number receives an SMS.")
@click.option("--sms-method", default="POST", type=click.Choice(["POST", "GET"], case_sensitive=False))
@data_dir_option
@database_url_option
@json_option
def numbers_add(
    account_sid: str,
    number: str,
    short_code: bool,
    sms_url: str | None,
    sms_method: str,
    data_dir: Path | None,
    database_url: str | None,
    as_json: bool,
) -> None:
    """Provision NUMBER (E.164 long code, or a short code with --short-code) to an account."""
    _check_account_sid(account_sid)
    try:
        settings_values: dict[str, object] = {"sms_method": sms_method.upper()}
        if sms_url is not None:
            settings_values["sms_url"] = provisioning.validate_url("--sms-url", sms_url)
    except TwilioError as exc:
        raise ConfigError(exc.message) from None
    kind = NumberKind.SHORT_CODE if short_code else NumberKind.LONG_CODE
    clock = SystemClock()

    async def add(store: Store) -> PhoneNumber:
        if await store.get_account(account_sid) is None:
            raise ConfigError(f"no account {account_sid} in this data directory")
        try:
            return await provisioning.provision_number(store, clock, account_sid, number, settings_values, kind=kind)
        except TwilioError as exc:
            hint = " (use --short-code for a short code)" if not short_code and number.isdigit() else ""
            raise ConfigError(exc.message + hint) from None

    record = _run(_settings(data_dir, database_url), add)
    if as_json:
        click.echo(json.dumps(_number_json(record)))
    else:
        click.echo(f"{record.sid}  {record.phone_number}  {record.kind.value}")


@numbers.command("list")
@_account_option()
@data_dir_option
@database_url_option
@json_option
def numbers_list(account_sid: str, data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """List an account's numbers and short codes."""
    _check_account_sid(account_sid)

    async def collect(store: Store) -> list[PhoneNumber]:
        if await store.get_account(account_sid) is None:
            raise ConfigError(f"no account {account_sid} in this data directory")
        found: list[PhoneNumber] = []
        for short in (False, True):
            offset = 0
            while True:
                page = await store.list_numbers(account_sid, NumberFilter(short_codes=short), PageRequest(1000, offset))
                found.extend(page.items)
                if not page.has_more:
                    break
                offset += len(page.items)
        return found

    found = _run(_settings(data_dir, database_url), collect)
    if as_json:
        click.echo(json.dumps([_number_json(n) for n in found]))
        return
    for n in found:
        click.echo(f"{n.sid}  {n.phone_number:16}  {n.kind.value:8}  {n.sms_url or ''}")


@cli.group()
def sim() -> None:
    """Play a handset on the simulated carrier."""


@sim.command("send")
@click.option("--from", "from_", required=True, help="The handset's number (E.164).")
@click.option("--to", required=True, help="One of your numbers (E.164 long code or short code).")
@click.option("--body", required=True, help="The text.")
@data_dir_option
@database_url_option
@json_option
def sim_send(from_: str, to: str, body: str, data_dir: Path | None, database_url: str | None, as_json: bool) -> None:
    """Deliver an inbound SMS to one of your numbers; a running serve makes the webhook request."""
    settings = _settings(data_dir, database_url)
    from kittiwake.receiving import receive_sms
    from kittiwake.runtime import build_policy

    async def receive(store: FullStore) -> Message:
        try:
            return await receive_sms(
                store, SystemClock(), build_policy(settings), settings,
                account_sid=None, from_raw=from_, to_raw=to, body=body,
            )  # fmt: skip
        except TwilioError as exc:
            raise ConfigError(exc.message) from None

    message = _run(settings, receive)
    if as_json:
        click.echo(json.dumps({"sid": message.sid, "account_sid": message.account_sid, "from": message.from_,
                               "to": message.to, "body": message.body, "status": message.status.value}))  # fmt: skip
    else:
        click.echo(f"{message.sid}  {message.from_} -> {message.to}  received")


def main(argv: list[str] | None = None) -> None:
    """Entry point: click's parsing with Kittiwake's error convention (one line on stderr, exit 2)."""
    try:
        cli.main(args=argv, prog_name="kittiwake", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"kittiwake: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except ConfigError as exc:
        click.echo(f"kittiwake: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
