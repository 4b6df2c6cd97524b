"""A paragraph's context: the heading path above it (part heading › section › sub-heading).

The label is the section the report put a paragraph in, and the headings above it say much of
that: a sub-section under 今后工作 whose own heading names 监督 is still `plans`. Every model reads
the path beside the paragraph, as the first text of a pair; an empty path means "unknown", and
training drops the path from a share of rows so one model serves both cases.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

# Limits on what a request may send (validation) and on what the model reads (the path is
# context, not content: it must never crowd the paragraph out of the window).
MAX_PATH_ITEMS = 6
MAX_HEADING_CHARS = 200
READ_ITEM_CHARS = 32  # each heading as the model reads it: enough for the whole of most headings
READ_PATH_ITEMS = 3  # the outermost (the part) and the two innermost carry the signal
SEPARATOR = " › "


def heading_path_problem(heading, heading_path) -> tuple[str, str] | None:
    """(field, what is wrong) with a paragraph's context as a caller gave it, or None: the one check
    of the CLI's paragraph files and the service (whose schema has checked the types already)."""
    from renda.parsing import bad_character

    if heading is not None and not isinstance(heading, str):
        return "heading", f"must be a string, not {type(heading).__name__}"
    if heading_path is not None and not (isinstance(heading_path, list) and all(isinstance(h, str) for h in heading_path)):
        return "heading_path", "must be a list of strings (the headings above the paragraph, outermost first)"
    items = heading_path or []
    if len(items) > MAX_PATH_ITEMS:
        return "heading_path", f"has {len(items)} items; the limit is {MAX_PATH_ITEMS}"
    for name, value in [("heading", heading or "")] + [(f"heading_path[{j}]", h) for j, h in enumerate(items)]:
        if len(value) > MAX_HEADING_CHARS:
            return name, f"has {len(value):,} characters; the limit is {MAX_HEADING_CHARS}"
        if problem := bad_character(value):
            return name, problem
    return None


def heading_path_of(heading: str | None, heading_path: Sequence[str] | None) -> list[str]:
    """One path from the two ways a caller can give context: `heading_path` if given (with
    `heading` appended when it is not already the last item), else `[heading]`, else []."""
    path = [h for h in (heading_path or []) if h and h.strip()]
    if heading and heading.strip() and (not path or path[-1] != heading):
        path.append(heading)
    return path


def path_text(path: Sequence[str] | None) -> str:
    """The path as the models read it: the part heading and the innermost headings, each cut."""
    items = [h.strip()[:READ_ITEM_CHARS] for h in path or [] if h and h.strip()]
    if len(items) > READ_PATH_ITEMS:
        items = items[:1] + items[-(READ_PATH_ITEMS - 1):]
    return SEPARATOR.join(items)


def contexts_or_empty(contexts: Sequence[Sequence[str]] | None, n: int) -> list[list[str]]:
    """`contexts` checked against the number of texts; None → no context for any."""
    if contexts is None:
        return [[] for _ in range(n)]
    if len(contexts) != n:
        raise ValueError(f"{len(contexts)} contexts for {n} texts")
    return [list(c or []) for c in contexts]


def drop_context(paths: list[str], share: float, rng: random.Random) -> list[str]:
    """Context dropout: each path replaced by "" with probability `share`."""
    return ["" if share and rng.random() < share else p for p in paths]
