"""Kittiwake's one typed settings object.

Built once at the edge (the CLI reads flags and the environment) and passed down; nothing else reads
``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "./kittiwake-data"


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

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kittiwake.sqlite3"


def data_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """``KITTIWAKE_DATA_DIR`` if set, else ``./kittiwake-data`` (the CLI's default for ``--data-dir``)."""
    env = os.environ if environ is None else environ
    return Path(env.get("KITTIWAKE_DATA_DIR") or DEFAULT_DATA_DIR)
