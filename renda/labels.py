"""The label set and the labeller's rules, read from renda/labels.toml (rules are data, not code)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

LABELS_FILE = Path(__file__).resolve().parent / "labels.toml"  # package data: found from an installed wheel too


@dataclass(frozen=True)
class Label:
    id: str
    zh: str
    description: str
    keywords: tuple[str, ...]
    body_keywords: tuple[str, ...]


@dataclass(frozen=True)
class LabelRules:
    labels: tuple[Label, ...]
    plans: tuple[str, ...]
    review: tuple[str, ...]
    closing: tuple[str, ...]
    furniture: tuple[str, ...]

    @property
    def ids(self) -> list[str]:
        return [label.id for label in self.labels]


@lru_cache(maxsize=4)
def load_rules(path: Path = LABELS_FILE) -> LabelRules:
    raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    labels = tuple(
        Label(
            id=item["id"],
            zh=item["zh"],
            description=item["description"],
            keywords=tuple(item.get("keywords", ())),
            body_keywords=tuple(item.get("body_keywords", ())),
        )
        for item in raw["label"]
    )
    sections = raw["sections"]
    return LabelRules(
        labels=labels,
        plans=tuple(sections["plans"]),
        review=tuple(sections["review"]),
        closing=tuple(sections["closing"]),
        furniture=tuple(sections["furniture"]),
    )


LABELS: list[str] = load_rules().ids
