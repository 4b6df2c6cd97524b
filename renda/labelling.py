"""Paragraphs → labels, read from the report's own headings (rules in data/labels.toml).

The report is walked once to cut it into *units*: stretches that share one label. A unit is a
section (一、…) or, under a review container (「一、过去一年主要工作」) or with no numbered
section above it, a sub-section （一）…. Fixed stretches need no vote: the preamble, the review
container's own summary, the closing appeal and page furniture are `other`; everything in the
forward-looking part is `plans`. Each remaining unit takes the label its heading's keywords point
to; when the heading has none or ties, the unit's paragraphs vote with their keywords. A unit with
no signal at all stays unlabelled (None): it is listed, never guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from renda.labels import LabelRules, load_rules
from renda.parsing import Paragraph, match_form

_NUMBER = re.compile(r"^(?:[一二三四五六七八九十]+[、.．]|[（(][一二三四五六七八九十]+[）)])\s*")
_PLANS_START = re.compile(r"^(?:今后|新的一年|新一年|今年|明年|下一步|20\d\d年(?:的)?(?:主要|工作|重点))")
# A part heading is short: longer headings with a plans word are topic headings
# (「坚决贯彻党中央决策部署、落实省委工作安排,…」 is leadership, not plans).
MAX_PART_HEADING = 20
HEADING_WEIGHT = 5


@dataclass
class Unit:
    heading: str
    members: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class LabelledParagraph:
    paragraph: Paragraph
    label: str | None


def _core(heading: str) -> str:
    return _NUMBER.sub("", match_form(heading))


def is_plans_heading(heading: str, rules: LabelRules) -> bool:
    core = _core(heading)
    if _PLANS_START.match(core) and any(word in core for word in rules.plans + ("任务", "安排", "打算")):
        return True
    return len(core) <= MAX_PART_HEADING and any(word in core for word in rules.plans)


def is_review_heading(heading: str, rules: LabelRules) -> bool:
    core = _core(heading)
    return len(core) <= MAX_PART_HEADING + 4 and any(word in core for word in rules.review)


def keyword_scores(text: str, rules: LabelRules, *, body: bool) -> Counter:
    folded = match_form(text).replace("人民代表大会", "人大")
    scores: Counter = Counter()
    for label in rules.labels:
        words = label.keywords + (label.body_keywords if body else ())
        if body:
            scores[label.id] = sum(folded.count(word) for word in words)
        else:
            scores[label.id] = sum(word in folded for word in words)
    return scores


def _best(scores: Counter) -> str | None:
    ranked = scores.most_common(2)
    if not ranked or ranked[0][1] == 0:
        return None
    if len(ranked) > 1 and ranked[1][1] == ranked[0][1]:
        return None
    return ranked[0][0]


def unit_label(unit: Unit, paragraphs: list[Paragraph], rules: LabelRules) -> str | None:
    """The heading decides when it is clear; otherwise the unit's own paragraphs vote."""
    heading_scores = keyword_scores(unit.heading, rules, body=False)
    decided = _best(heading_scores)
    if decided:
        return decided
    votes: Counter = Counter()
    for index in unit.members:
        votes.update(keyword_scores(paragraphs[index].text, rules, body=True))
    for label, score in heading_scores.items():
        votes[label] += HEADING_WEIGHT * score
    votes.pop("plans", None)
    return _best(votes)


def label_paragraphs(paragraphs: list[Paragraph], rules: LabelRules | None = None) -> list[LabelledParagraph]:
    """Label one report's ordered paragraphs from its headings."""
    rules = rules or load_rules()
    fixed: dict[int, str] = {}
    units: list[Unit] = []
    mode = "preamble"  # preamble | review | section | plans | closing
    section_is_unit = False  # does the current 一、 section carry the label for its sub-sections?
    for i, para in enumerate(paragraphs):
        folded = match_form(para.text)
        if para.furniture:
            fixed[i] = "other"
            if mode in ("section", "plans"):  # furniture after the body: the page has ended
                mode = "closing"
            continue
        if mode in ("section", "plans") and folded.startswith(tuple(match_form(w) for w in rules.closing)):
            mode = "closing"
        if mode == "closing":
            fixed[i] = "other"
            continue
        opens = para.level in (1, 2)
        if opens and is_plans_heading(para.heading, rules) and not _fused_prose(para):
            mode = "plans"
        elif opens and mode != "plans" and para.level == 1 and is_review_heading(para.heading, rules) and not _fused_prose(para):
            mode, section_is_unit = "review", False
        elif opens and mode != "plans":
            if para.level == 1 or not section_is_unit:
                units.append(Unit(heading=para.heading))
                section_is_unit = para.level == 1
            mode = "section"
        if mode == "plans":
            fixed[i] = "plans"
        elif mode in ("preamble", "review"):
            fixed[i] = "other"
        else:
            units[-1].members.append(i)
    labels: dict[int, str | None] = dict(fixed)
    for unit in units:
        label = unit_label(unit, paragraphs, rules)
        for index in unit.members:
            labels[index] = label
    return [LabelledParagraph(paragraph=p, label=labels[i]) for i, p in enumerate(paragraphs)]


def _fused_prose(para: Paragraph) -> bool:
    """A numbered line that runs on as prose opens a topic section, never a part."""
    return not para.is_heading
