"""Process metrics in the Prometheus text format (``GET /metrics``): what each running part counts.

Parts register samplers (functions returning current values) at start-up; a scrape reads them. No
account data appears here, only totals, so the endpoint needs no credentials (like ``/healthz``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    kind: str  # "counter" or "gauge"
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


Sampler = Callable[[], Iterable[Sample]]


class Metrics:
    def __init__(self) -> None:
        self._samplers: list[Sampler] = []

    def register(self, sampler: Sampler) -> None:
        self._samplers.append(sampler)

    def render(self) -> str:
        """The exposition text: HELP and TYPE once per metric name, then its samples."""
        lines: list[str] = []
        described: set[str] = set()
        for sampler in self._samplers:
            for sample in sampler():
                name = f"kittiwake_{sample.name}"
                if name not in described:
                    described.add(name)
                    lines.append(f"# HELP {name} {sample.help}")
                    lines.append(f"# TYPE {name} {sample.kind}")
                labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels)
                lines.append(f"{name}{{{labels}}} {sample.value:g}" if labels else f"{name} {sample.value:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
