"""Write a model into a fresh directory and publish it by rename only when everything succeeded."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(final: Path | str) -> Iterator[Path]:
    """Yield an empty staging folder beside `final`; on success it replaces `final` by rename.

    Any exception (or Ctrl-C) removes the staging folder and leaves `final` as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.staging-"))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if final.exists():
        retired = final.parent / f".{final.name}.retired-{os.getpid()}"
        os.rename(final, retired)  # both renames are atomic; between them the old model is set aside
    os.rename(staging, final)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
