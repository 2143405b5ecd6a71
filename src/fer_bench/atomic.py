"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then renamed over the target.

A process killed mid-write (SIGKILL, a lost node, a full disk) leaves the previous file intact, never a truncated
one. The temporary file lives in the same folder, so the final ``os.replace`` is a rename on one file system;
a killed write leaves only a ``.<name>.tmp-*`` file beside it (see ``stale_temporaries``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_MARK = ".tmp-"


def _atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TEMP_MARK}")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    import torch

    _atomic(Path(path), lambda f: torch.save(obj, f))


def atomic_write_text(path: str | Path, text: str) -> None:
    """``Path(path).write_text(text)``, atomically."""
    _atomic(Path(path), lambda f: f.write(text.encode()))


def stale_temporaries(folder: Path) -> list[Path]:
    """Temporary files that a killed atomic write left in ``folder``."""
    return sorted(p for p in Path(folder).glob(f".*{TEMP_MARK}*") if p.is_file())
