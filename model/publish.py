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

from renda.records import DataError, created_mode


def check_replaceable(final: Path | str, marks: tuple[str, ...]) -> None:
    """`final` may be replaced: it is missing, an empty folder, or a folder holding one of `marks`
    (the files this kind of output always has: a model's renda_model.json, a dataset's summary.json).
    Anything else (the reports themselves, a folder of models, a file, a link) is refused, since
    publishing removes what was there."""
    final = Path(final)
    if final.is_symlink():
        raise DataError(final, "is a symbolic link; give the folder it points to")
    if not final.exists():
        return
    if not final.is_dir():
        raise DataError(final, "is a file, not an output folder; give a new or empty folder")
    if any(final.iterdir()) and not any((final / mark).exists() for mark in marks):
        raise DataError(final, f"holds other files and no {' or '.join(marks)}: it is not an earlier output of this "
                               "step, and publishing would remove it; give a new or empty folder")


@contextmanager
def staged_directory(final: Path | str, marks: tuple[str, ...]) -> Iterator[Path]:
    """Yield an empty staging folder beside `final`; on success it replaces `final` by rename.

    `final` must be replaceable (`check_replaceable`: missing, empty, or holding one of `marks`).
    Any exception (or Ctrl-C) removes the staging folder and leaves `final` as it was. A process
    killed outright (SIGKILL, power loss) cannot clean up: its leftovers carry its pid, and the next
    run removes those of processes that are gone (see `clean_leftovers`).
    """
    final = Path(final)
    check_replaceable(final, marks)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(final)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.staging-{os.getpid()}-"))
    os.chmod(staging, created_mode(directory=True))  # mkdtemp's 0700 would hide the published folder from other users
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
