"""Schema migrations shipped in the package: ``NNNN_name.<engine>.sql``, applied in order, once each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgresql)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The SQL split into statements; ``--`` comments removed first (they may contain ';')."""
        code = "\n".join(line.split("--", 1)[0] for line in self.sql.splitlines())
        return [s.strip() for s in code.split(";") if s.strip()]


def migrations_for(engine: str) -> list[Migration]:
    """Every migration for ``engine`` ("sqlite" or "postgresql"), oldest first."""
    found: list[Migration] = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match and match.group(3) == engine:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)
