"""Write a model into a fresh directory and publish it by rename only when everything succeeded."""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(final: Path | str) -> Iterator[Path]:
    """Yield an empty staging folder beside `final`; on success it replaces `final` by rename.

    Any exception (or Ctrl-C) removes the staging folder and leaves `final` as it was. A process
    killed outright (SIGKILL, power loss) cannot clean up: its leftovers carry its pid, and the next
    run removes those of processes that are gone (see `clean_leftovers`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(final)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.staging-{os.getpid()}-"))
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


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_leftovers(final: Path) -> None:
    """Remove `.NAME.staging-PID-*` and `.NAME.retired-PID` beside `final` whose process is gone.

    A retired folder whose process died between its two renames is the previous model: when `final`
    is missing it is put back instead of removed. Leftovers of running processes are left alone.
    """
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(staging|retired)-(\d+)(-.*)?$")
    for path in sorted(final.parent.glob(f".{glob.escape(final.name)}.*")):
        match = pattern.match(path.name)
        if not match or not path.is_dir() or int(match[2]) == os.getpid() or _running(int(match[2])):
            continue
        if match[1] == "retired" and not final.exists():
            os.rename(path, final)
        else:
            shutil.rmtree(path, ignore_errors=True)
