"""Kittiwake's one typed settings object.

Built once at the edge (the CLI reads flags and the environment) and passed down; nothing else reads
``os.environ``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kittiwake.errors import ConfigError

DEFAULT_DATA_DIR = "./kittiwake-data"
OUTCOMES = ("delivered", "undelivered", "failed")


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """Segments per second per sender kind, and per sender (the seed: one per second per long code,
    which the API cannot change; short codes far faster; the operator sets both here)."""

    long_code: float = 1.0
    short_code: float = 100.0
    toll_free: float = 3.0
    per_sender: tuple[tuple[str, float], ...] = ()
    # A sender's queue holds at most this much backlog at its rate (Twilio: 10 hours -> error 21611).
    max_backlog_seconds: float = 36000.0


@dataclass(frozen=True, slots=True)
class SimRule:
    """An outcome the simulated carrier gives destinations starting with ``prefix`` (longest wins)."""

    prefix: str
    outcome: str
    error_code: int | None = None
    receipt_delay: float | None = None


# Test destinations documented in the README: rejected at submission, and sent but never delivered.
DEFAULT_SIM_RULES = (
    SimRule("+15005550030", "failed", 30008),
    SimRule("+15005550031", "undelivered", 30003),
)


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    receipt_delay: float = 0.2
    rules: tuple[SimRule, ...] = DEFAULT_SIM_RULES


@dataclass(frozen=True, slots=True)
class CarrierSettings:
    """One ``[[carriers]]`` table: a simulated carrier, or an SMPP 3.4 bind to a real SMSC."""

    name: str
    type: str  # "smpp" or "simulator"
    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    bind_mode: str = "transceiver"  # or "transmitter_receiver": two binds
    window: int = 10  # submit_sm awaiting their response at once
    max_submits_per_second: float = 0.0  # 0: no limit of the bind's own
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 30.0
    source_ton: int = 1
    source_npi: int = 1
    dest_ton: int = 1
    dest_npi: int = 1
    registered_delivery: int = 1
    concat: str = "udh"  # or "sar": how the parts of a long message are tied together
    default: bool = False
    # Binds the SMSC account allows at once. With several dispatcher processes each bind slot is leased to
    # one process at a time; 0 means no limit (every dispatcher binds).
    max_binds: int = 1


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """One ``[[routes]]`` table: traffic to a destination prefix and/or from a sender goes to ``carrier``."""

    carrier: str
    prefix: str | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """How inbound messages reach the app and what Kittiwake answers on its own."""

    help_reply: str = "Reply STOP to unsubscribe. Msg&Data rates may apply."
    webhook_timeout: float = 15.0
    max_redirects: int = 10
    max_replies: int = 10
    # Loop protection (Twilio error 14107): more than `loop_limit` replies between the same two numbers
    # within `loop_window` seconds fail for the next `loop_window` seconds.
    loop_limit: int = 30
    loop_window: float = 30.0


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    timeout: float = 15.0
    give_up_after: float = 86400.0
    backoff_base: float = 1.0
    backoff_cap: float = 600.0
    per_host_concurrency: int = 8


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a Kittiwake process needs to know about its deployment."""

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    host: str = "127.0.0.1"
    port: int = 8080
    # Largest request body the API reads (a Twilio create is well under 4 KiB; 1600 UCS-2 characters
    # percent-encoded are ~15 KiB). Larger bodies get 413 before anything is parsed.
    max_request_bytes: int = 64 * 1024
    # Region assumed for short codes, which carry no country code (Twilio's short codes are per country).
    short_code_region: str = "US"
    # Most write operations one group-commit transaction carries.
    max_commit_batch: int = 512
    # SQLite's synchronous level: FULL makes every acknowledged create survive power loss; group commit
    # keeps that affordable. NORMAL survives a process crash only.
    sqlite_synchronous: str = "FULL"
    log_level: str = "info"
    # PostgreSQL instead of the SQLite data directory (several processes, several machines).
    database_url: str | None = None
    # What this process does: any of "api", "dispatcher", "webhooks".
    roles: frozenset[str] = frozenset({"api", "dispatcher", "webhooks"})
    # Bind the API port with SO_REUSEPORT so several API processes share it (``serve --workers N``).
    reuse_port: bool = False
    # Whether this process creates the first account on an empty database and prints its credentials.
    bootstrap: bool = True
    pacing: PacingSettings = field(default_factory=PacingSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    inbound: InboundSettings = field(default_factory=InboundSettings)
    carriers: tuple[CarrierSettings, ...] = ()
    routes: tuple[RouteSettings, ...] = ()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kittiwake.sqlite3"


ROLES = ("api", "dispatcher", "webhooks")


def parse_roles(text: str) -> frozenset[str]:
    """``all`` or a comma-separated list of api, dispatcher, webhooks."""
    if text.strip() == "all":
        return frozenset(ROLES)
    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = roles - set(ROLES)
    if not roles or unknown:
        raise ConfigError(f"--role takes all or a comma-separated list of {', '.join(ROLES)}; got {text!r}")
    return roles


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get("KITTIWAKE_DATABASE_URL") or None


def data_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """``KITTIWAKE_DATA_DIR`` if set, else ``./kittiwake-data`` (the CLI's default for ``--data-dir``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("KITTIWAKE_DATA_DIR") or DEFAULT_DATA_DIR)


def config_path_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if environ is None else environ
    value = env.get("KITTIWAKE_CONFIG")
    return Path(value) if value else None


def load_config(path: Path, base: Settings) -> Settings:
    """``base`` with the tables of the TOML file at ``path`` applied (README: Configuration)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"pacing", "simulator", "callbacks", "inbound", "carriers", "routes"}
    if unknown:
        raise ConfigError(f"config {path}: unknown table(s) {', '.join(sorted(unknown))}")
    settings = base
    if "pacing" in data:
        settings = replace(settings, pacing=_pacing(_table(data, "pacing")))
    if "simulator" in data:
        settings = replace(settings, simulator=_simulator(_table(data, "simulator")))
    if "callbacks" in data:
        settings = replace(settings, callbacks=_callbacks(_table(data, "callbacks")))
    if "inbound" in data:
        settings = replace(settings, inbound=_inbound(_table(data, "inbound")))
    if "carriers" in data or "routes" in data:
        carriers = tuple(_carrier(raw) for raw in _array(data, "carriers"))
        routes = tuple(_route(raw) for raw in _array(data, "routes"))
        _check_carriers(carriers, routes)
        settings = replace(settings, carriers=carriers, routes=routes)
    return settings


def _array(data: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"config: {name} must be an array of tables ([[{name}]])")
    return value


_CARRIER_FIELDS = {f for f in CarrierSettings.__dataclass_fields__}


def _carrier(raw: dict[str, Any]) -> CarrierSettings:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("config: every [[carriers]] table needs a name")
    _known(f"carriers {name}", raw, _CARRIER_FIELDS)
    kind = raw.get("type")
    if kind not in ("smpp", "simulator"):
        raise ConfigError(f'config: carrier {name}: type must be "smpp" or "simulator"')
    defaults = CarrierSettings(name=name, type=str(kind))
    values: dict[str, Any] = {}
    for key, value in raw.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"config: carrier {name}: {key} must be a {expected.__name__}, got {value!r}")
        values[key] = value
    carrier = replace(defaults, **values)
    if carrier.type == "smpp":
        if not carrier.system_id or not carrier.host:
            raise ConfigError(f"config: carrier {name}: an SMPP carrier needs host, port, system_id and password")
        if len(carrier.system_id) > 15 or len(carrier.password) > 8 or len(carrier.system_type) > 12:
            # SMPP 3.4 §5.2.1: system_id 16, password 9, system_type 13 octets, each with its NUL.
            raise ConfigError(f"config: carrier {name}: system_id <= 15, password <= 8, system_type <= 12 characters")
    if carrier.bind_mode not in ("transceiver", "transmitter_receiver"):
        raise ConfigError(f"config: carrier {name}: bind_mode must be transceiver or transmitter_receiver")
    if carrier.concat not in ("udh", "sar"):
        raise ConfigError(f"config: carrier {name}: concat must be udh or sar")
    if carrier.max_binds < 0:
        raise ConfigError(f"config: carrier {name}: max_binds must be 0 (no limit) or more")
    if carrier.window < 1 or not 0 < carrier.port < 65536:
        raise ConfigError(f"config: carrier {name}: window must be >= 1 and port 1..65535")
    return carrier


def _route(raw: dict[str, Any]) -> RouteSettings:
    _known("routes", raw, {"carrier", "prefix", "from"})
    carrier, prefix, sender = raw.get("carrier"), raw.get("prefix"), raw.get("from")
    if not isinstance(carrier, str) or not carrier:
        raise ConfigError("config: every [[routes]] table names a carrier")
    for key, value in (("prefix", prefix), ("from", sender)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"config: route to {carrier}: {key} must be a non-empty string")
    if prefix is None and sender is None:
        raise ConfigError(f"config: route to {carrier}: give a destination prefix, a from (sender), or both")
    return RouteSettings(carrier, prefix, sender)


def _check_carriers(carriers: tuple[CarrierSettings, ...], routes: tuple[RouteSettings, ...]) -> None:
    names = [c.name for c in carriers]
    if len(set(names)) != len(names):
        raise ConfigError("config: carrier names must be unique")
    if sum(c.default for c in carriers) > 1:
        raise ConfigError("config: at most one carrier can be the default")
    for route in routes:
        if route.carrier not in names:
            raise ConfigError(f"config: a route names carrier {route.carrier!r}, which is not configured")


def _inbound(data: dict[str, Any]) -> InboundSettings:
    _known("inbound", data, {"help_reply", "webhook_timeout"})
    d = InboundSettings()
    help_reply = data.get("help_reply", d.help_reply)
    if not isinstance(help_reply, str) or not help_reply or len(help_reply) > 1600:
        raise ConfigError("config: inbound.help_reply must be a text of 1 to 1600 characters")
    timeout = _positive("inbound", "webhook_timeout", data.get("webhook_timeout", d.webhook_timeout))
    return replace(d, help_reply=help_reply, webhook_timeout=timeout)


def _table(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data[name]
    if not isinstance(value, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    return value


def _positive(table: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"config: {table}.{key} must be a positive number, got {value!r}")
    return float(value)


def _known(table: str, data: Mapping[str, Any], keys: set[str]) -> None:
    unknown = set(data) - keys
    if unknown:
        raise ConfigError(f"config: unknown key(s) in [{table}]: {', '.join(sorted(unknown))}")


def _pacing(data: dict[str, Any]) -> PacingSettings:
    _known("pacing", data, {"long_code", "short_code", "toll_free", "senders", "max_backlog_seconds"})
    defaults = PacingSettings()
    senders = data.get("senders", {})
    if not isinstance(senders, dict):
        raise ConfigError("config: [pacing.senders] must map sender numbers to segments per second")
    return PacingSettings(
        long_code=_positive("pacing", "long_code", data.get("long_code", defaults.long_code)),
        short_code=_positive("pacing", "short_code", data.get("short_code", defaults.short_code)),
        toll_free=_positive("pacing", "toll_free", data.get("toll_free", defaults.toll_free)),
        per_sender=tuple((str(k), _positive("pacing.senders", str(k), v)) for k, v in senders.items()),
        max_backlog_seconds=_positive(
            "pacing", "max_backlog_seconds", data.get("max_backlog_seconds", defaults.max_backlog_seconds)
        ),
    )


def _simulator(data: dict[str, Any]) -> SimulatorSettings:
    _known("simulator", data, {"receipt_delay", "rules"})
    delay = data.get("receipt_delay", SimulatorSettings().receipt_delay)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise ConfigError(f"config: simulator.receipt_delay must be 0 or more seconds, got {delay!r}")
    rules = list(DEFAULT_SIM_RULES)
    for raw in data.get("rules", []):
        if not isinstance(raw, dict):
            raise ConfigError("config: [[simulator.rules]] entries must be tables")
        _known("simulator.rules", raw, {"prefix", "outcome", "error_code", "receipt_delay"})
        prefix, outcome = raw.get("prefix"), raw.get("outcome")
        if not isinstance(prefix, str) or not prefix:
            raise ConfigError("config: every simulator rule needs a prefix (a number or its beginning)")
        if outcome not in OUTCOMES:
            raise ConfigError(f"config: simulator rule {prefix}: outcome must be one of {', '.join(OUTCOMES)}")
        code = raw.get("error_code")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise ConfigError(f"config: simulator rule {prefix}: error_code must be an integer")
        rule_delay = raw.get("receipt_delay")
        if rule_delay is not None:
            rule_delay = _positive("simulator.rules", "receipt_delay", rule_delay)
        rules.append(SimRule(prefix, str(outcome), code, rule_delay))
    return SimulatorSettings(receipt_delay=float(delay), rules=tuple(rules))


def _callbacks(data: dict[str, Any]) -> CallbackSettings:
    keys = {"timeout", "give_up_after", "backoff_base", "backoff_cap", "per_host_concurrency"}
    _known("callbacks", data, keys)
    d = CallbackSettings()
    per_host = data.get("per_host_concurrency", d.per_host_concurrency)
    if isinstance(per_host, bool) or not isinstance(per_host, int) or per_host < 1:
        raise ConfigError("config: callbacks.per_host_concurrency must be a whole number of 1 or more")
    return CallbackSettings(
        timeout=_positive("callbacks", "timeout", data.get("timeout", d.timeout)),
        give_up_after=_positive("callbacks", "give_up_after", data.get("give_up_after", d.give_up_after)),
        backoff_base=_positive("callbacks", "backoff_base", data.get("backoff_base", d.backoff_base)),
        backoff_cap=_positive("callbacks", "backoff_cap", data.get("backoff_cap", d.backoff_cap)),
        per_host_concurrency=per_host,
    )
