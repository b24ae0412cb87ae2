"""Schemathesis against a live gateway, using the OpenAPI description the gateway serves itself.

One test drives schemathesis programmatically: for every operation in ``GET /openapi.json`` it
generates positive and negative requests (seeded, so CI sees the same requests on every run), sends
them with the fixture account's Basic credentials and runs these checks on every response:

* ``not_a_server_error``: no 5xx, whatever the input;
* ``status_code_conformance``: the status is one the operation documents;
* ``content_type_conformance`` and ``response_schema_conformance``: the body is JSON and matches the
  documented schema of that status (records, list envelopes and the ``error`` object).

``negative_data_rejection`` is left out: the description lets form bodies carry any undocumented
field (``additionalProperties`` strings, which the server ignores) and accepts date filters leniently,
so "invalid" requests that the server rightly accepts would be reported as failures.

Failures are collected, not raised inside Hypothesis, so nothing is shrunk (bounded time) and one
assertion at the end lists every distinct failing request (method, path, status, body).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import unregister_string_format

from support import RunningGateway, run_cli

SENDER = "+14158141829"
RECIPIENT = "+14159352345"
SHORT_CODE = "98765"
MAX_EXAMPLES = 30  # per operation and generation mode (positive, negative): 60 requests per operation
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
# Reads first, then creates and updates, deletes last: a deleted seed is recreated before each operation.
METHOD_ORDER = {"GET": 0, "POST": 1, "DELETE": 2}
# "phone-number" is a Twilio format schemathesis does not know (it would generate arbitrary text, so every
# create would stop at "invalid number"): the seeded sender and recipient, or some valid US number.
PHONE_NUMBERS = st.one_of(
    st.just(SENDER), st.just(RECIPIENT), st.from_regex(r"\+1(415|212|646)[2-9][0-9]{6}", fullmatch=True)
)


@dataclass
class Seed:
    """Real SIDs of the fixture account, so instance paths are fuzzed past the 404."""

    account: str
    subaccount: str
    number: str
    short_code: str
    application: str = ""
    message: str = ""

    def sids_for(self, path: str) -> list[str]:
        """The real SIDs an instance path ``…/{Sid}.json`` may take."""
        collection = path.removesuffix("/{Sid}.json")
        if collection == "/2010-04-01/Accounts":
            return [self.account, self.subaccount]
        for suffix, sid in (
            ("/Messages", self.message),  # also the legacy SMS/Messages
            ("/IncomingPhoneNumbers", self.number),
            ("/SMS/ShortCodes", self.short_code),
            ("/Applications", self.application),
        ):
            if collection.endswith(suffix):
                return [sid]
        raise AssertionError(f"no seed SID for {path}")


@dataclass
class Report:
    """Distinct failures, keyed by operation, check and status, with one example request each."""

    failures: dict[tuple[str, str, int | None], str] = field(default_factory=dict)
    requests: int = 0
    operations: int = 0

    def add(self, label: str, title: str, status: int | None, text: str) -> None:
        self.failures.setdefault((label, title, status), text)

    def render(self) -> str:
        return "\n\n".join(dict.fromkeys(self.failures.values()))  # a request failing two checks shows once


def _post(client: httpx.Client, path: str, data: dict[str, str]) -> dict[str, Any]:
    response = client.post(path, data=data)
    assert response.status_code == 201, (path, response.status_code, response.text)
    return dict(response.json())


def _seed(gateway: RunningGateway, client: httpx.Client, seed: Seed) -> None:
    """(Re)create what a previous operation may have deleted: the sender, an application, a message."""
    numbers = client.get(gateway.account_path("/IncomingPhoneNumbers.json"), params={"PhoneNumber": SENDER})
    assert numbers.status_code == 200, numbers.text
    found = [n["sid"] for n in numbers.json()["incoming_phone_numbers"] if n["phone_number"] == SENDER]
    if found:
        seed.number = found[0]
    else:
        path = gateway.account_path("/IncomingPhoneNumbers.json")
        seed.number = _post(client, path, {"PhoneNumber": SENDER})["sid"]
    path = gateway.account_path("/Applications.json")
    seed.application = _post(client, path, {"FriendlyName": "fuzz"})["sid"]
    data = {"From": SENDER, "To": RECIPIENT, "Body": "fuzz"}
    seed.message = _post(client, gateway.account_path("/Messages.json"), data)["sid"]


def _with_seeded_references(case: schemathesis.Case, seed: Seed) -> schemathesis.Case:
    if not isinstance(case.body, dict):
        return case
    body = dict(case.body)
    for name in ("ApplicationSid", "SmsApplicationSid"):
        if name in body:
            body[name] = seed.application
    if case.operation.path.endswith("/Messages.json"):  # a create, modern or legacy
        body["From"] = SENDER
        body["Body"] = body.get("Body") or "fuzz"
    case.body = body
    return case


def _describe(case: schemathesis.Case, response: requests.Response, failures: list[Failure]) -> str:
    sent = response.request
    lines = [
        f"{case.operation.label}: {', '.join(sorted({f.title for f in failures}))}",
        f"  request:  {sent.method} {sent.url}",
    ]
    if sent.body:
        text = sent.body if isinstance(sent.body, str) else sent.body.decode(errors="replace")
        lines.append(f"  body:     {text[:600]}")
    lines.append(f"  response: {response.status_code} {response.text[:600]}")
    lines.extend(f"  - {f.title}: {f.message.strip()[:800]}" for f in failures)
    return "\n".join(lines)


def _fuzz_operation(
    operation: schemathesis.APIOperation,
    strategy: st.SearchStrategy[schemathesis.Case],
    send: Callable[[schemathesis.Case], None],
) -> None:
    @settings(
        max_examples=MAX_EXAMPLES * len(MODES),
        deadline=None,
        derandomize=True,  # the same requests on every run
        database=None,
        phases=[Phase.generate],  # failures are collected, never raised: nothing to shrink
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        send(case)

    run()


@pytest.mark.fuzz
@pytest.mark.timeout(300)
def test_server_conforms_to_its_own_openapi_description(gateway: RunningGateway) -> None:
    started = time.monotonic()
    schemathesis.openapi.format("phone-number", PHONE_NUMBERS)
    try:
        _fuzz(gateway, started)
    finally:
        unregister_string_format("phone-number")


def _fuzz(gateway: RunningGateway, started: float) -> None:
    config = schemathesis.Config.from_dict({})  # explicit: no schemathesis.toml is discovered
    schema = schemathesis.openapi.from_url(f"{gateway.base_url}/openapi.json", config=config, timeout=10)

    # Short codes cannot be created through the API (Twilio provisions them out of band), only by the CLI.
    short = run_cli("numbers", "add", "--account", gateway.account_sid, "--short-code", SHORT_CODE, "--json",
                    data_dir=gateway.data_dir)  # fmt: skip
    with gateway.client() as client, requests.Session() as session:
        sub = _post(client, "/2010-04-01/Accounts.json", {"FriendlyName": "fuzz subaccount"})["sid"]
        seed = Seed(gateway.account_sid, sub, "", json.loads(short.stdout)["sid"])
        session.auth = gateway.auth
        report = _fuzz_all(schema, gateway, client, session, seed)
    elapsed = time.monotonic() - started
    summary = f"{report.requests} requests to {report.operations} operations in {elapsed:.0f}s"
    assert not report.failures, f"{len(report.failures)} distinct failures ({summary}):\n\n{report.render()}"
    assert report.requests >= report.operations * MAX_EXAMPLES, summary


def _fuzz_all(
    schema: schemathesis.BaseSchema,
    gateway: RunningGateway,
    client: httpx.Client,
    session: requests.Session,
    seed: Seed,
) -> Report:
    report = Report()

    def send(case: schemathesis.Case) -> None:
        response = case.call(base_url=gateway.base_url, session=session, timeout=15)
        report.requests += 1
        try:
            case.validate_response(response, checks=CHECKS, transport_kwargs={"base_url": gateway.base_url})
        except FailureGroup as group:
            failures = list(group.exceptions)
            text = _describe(case, response, failures)
            for failure in failures:
                report.add(case.operation.label, failure.title, response.status_code, text)

    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: (METHOD_ORDER[op.method.upper()], op.path))
    assert len(operations) >= 20, [op.label for op in operations]
    report.operations = len(operations)
    for operation in operations:
        _seed(gateway, client, seed)
        fixed: dict[str, str] = {}
        if "{AccountSid}" in operation.path:
            fixed["AccountSid"] = gateway.account_sid
        variants = [fixed]
        if "{Sid}" in operation.path:
            # Cases address a real resource (the subaccount, too, for Accounts) or a generated SID (404).
            variants = [{**fixed, "Sid": sid} for sid in seed.sids_for(operation.path)] + [fixed]
        strategies = [
            operation.as_strategy(generation_mode=mode, path_parameters=params) for mode in MODES for params in variants
        ]
        if operation.method.upper() == "POST":
            # Also valid bodies that name the seeded sender and application, which generated SIDs and
            # numbers almost never do, so creates and updates get past "not yours" to the happy path.
            positive = operation.as_strategy(path_parameters=variants[0])
            strategies.append(positive.map(lambda case: _with_seeded_references(case, seed)))
        strategy = st.one_of(strategies)
        _fuzz_operation(operation, strategy, send)
    return report
