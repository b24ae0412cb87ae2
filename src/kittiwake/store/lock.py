"""The data directory's lock: one process may hold it (a serve with a dispatcher, or a data migration)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from kittiwake.errors import ConfigError


@contextlib.contextmanager
def exclusive_data_dir(data_dir: Path, refusal: str) -> Iterator[None]:
    """Hold ``data_dir/serve.lock`` (with our pid in it); ConfigError(refusal) if another process has it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "serve.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(refusal) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
