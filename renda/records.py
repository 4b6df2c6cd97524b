"""The one JSONL format for labelled paragraphs, read and written everywhere.

One object a line: `report_id`, `text`, `label`, and optional `heading` (the nearest heading
above), `heading_path` (every heading above, outermost first: part › section › sub-heading),
`is_heading`, `position`; other keys are allowed and ignored. Bad input stops with a `DataError` naming the
file and line; files are written atomically so nothing half-written is left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from renda.labels import LABELS


class DataError(ValueError):
    """Bad input data; the message names the file (and line) at fault."""

    def __init__(self, path: Path | str, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.message = str(path), line, message


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    report_id: str
    text: str
    label: str | None
    heading: str = ""
    heading_path: list[str] | None = None  # None: not given (derived from the report's rows when possible)
    is_heading: bool = False
    position: int | None = None

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("`text` is empty")
        return value

    @field_validator("label")
    @classmethod
    def _known_label(cls, value: str | None) -> str | None:
        if value is not None and value not in LABELS:
            raise ValueError(f"unknown label {value!r}; expected one of {', '.join(LABELS)}")
        return value


def read_text_file(path: Path | str) -> str:
    """A UTF-8 text file, or a DataError naming the first line that is not UTF-8 / the empty file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror or error}") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(path, "not UTF-8 text (save the file as UTF-8)", line) from error
    if not text.strip():
        raise DataError(path, "the file is empty")
    return text


def iter_json_objects(path: Path | str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; bad lines stop it."""
    path = Path(path)
    # lines end at \n only: str.splitlines() would also cut at U+2028/2029 inside a JSON string
    for number, line in enumerate(read_text_file(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(path, f"not valid JSON ({error.msg})", number) from error
        if not isinstance(obj, dict):
            raise DataError(path, "each line must be a JSON object with a `text`", number)
        yield number, obj


def read_jsonl(path: Path | str, *, require_label: bool = True) -> list[Record]:
    """Every record of a labelled JSONL file, validated; the first bad line stops it."""
    path = Path(path)
    records = []
    for number, obj in iter_json_objects(path):
        if "text" not in obj:
            raise DataError(path, "missing `text`", number)
        if require_label and obj.get("label") is None:
            raise DataError(path, "missing `label`", number)
        obj.setdefault("report_id", path.stem)
        obj.setdefault("label", None)  # unlabelled rows (require_label=False): paragraphs to label
        try:
            records.append(Record.model_validate(obj))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "line"
            message = first["msg"].removeprefix("Value error, ")
            raise DataError(path, f"`{field}`: {message}", number) from error
    return records


def created_mode(directory: bool = False) -> int:
    """The mode a plain open() or mkdir() would give under this process's umask (read without
    changing it, so no other thread sees a different one): temporary files are made 0600 and
    folders 0700, which would keep a published model from a service running as another user."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            mask = next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = 0o022
    return (0o777 if directory else 0o666) & ~mask


def atomic_write(path: Path | str, write: Callable[[Path], object]) -> Path:
    """`write(a temporary path beside it)`, then rename into place: readers never see half a file, and
    a failure leaves the old file as it was and no temporary one. The temporary name keeps the
    suffix, for writers that choose the format by it (matplotlib, parquet)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        write(Path(tmp))
        os.chmod(tmp, created_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path | str, text: str) -> None:
    """A text file written whole or not at all (atomic_write)."""
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def dumps_jsonl(rows: Iterable[dict]) -> str:
    """One JSON object a line, Chinese as it is; U+2028/2029 escaped, since many readers (Python's
    str.splitlines among them) take them for line ends."""
    return "".join(json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n"
                   for row in rows)


def write_jsonl(path: Path | str, rows: Iterable[dict | BaseModel]) -> None:
    atomic_write_text(path, dumps_jsonl(r.model_dump() if isinstance(r, BaseModel) else r for r in rows))
