"""Paragraphs → labels, read from the report's own headings (rules in renda/labels.toml).

The report is walked once to cut it into *units*: stretches that share one label. A unit is a
section (一、…) or, under a review container (「一、过去一年主要工作」) or with no numbered
section above it, a sub-section （一）…; in a review container with neither, a section it numbers
lower: 「1.」「（1）」 items or run-in paragraphs (「一是坚持党的全面领导。常委会…」, 「第一，…」;
`numbered_sections`). Fixed stretches need no vote: the preamble, the review
container's own summary, the closing appeal and page furniture are `other`; everything in the
forward-looking part is `plans`. Each remaining unit takes the label its heading's keywords point
to; when the heading has none or ties, the unit's paragraphs vote with their keywords. A unit with
no signal at all stays unlabelled (None): it is listed, never guessed. Whole-report mode
(`model/reports.py`) weighs these rules against a model; `segment_rule` says how each was decided.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from renda.labels import LabelRules, load_rules
from renda.parsing import Paragraph, is_plans_heading, is_review_heading, match_form, topic

HEADING_WEIGHT = 5
_NUMERALS = "一二三四五六七八九十"
# numbers that open a paragraph (run-in: 「一是…」, 「第一，…」) or an item line (「1.」, 「(1)」), NFKC-folded
_RUN_IN = re.compile(rf"^(?:([{_NUMERALS}])是|第([{_NUMERALS}])[,、])")
_ITEM = re.compile(r"^(?:(\d{1,2})\s*[.、](?!\d)|\((\d{1,2})\))")


@dataclass
class Segment:
    """A stretch of a report that shares one label: a unit (a section or sub-section, labelled
    from its heading or its paragraphs' vote) or a part the structure fixes."""

    kind: str  # preamble | review | unit | plans | closing
    heading: str
    members: list[int] = field(default_factory=list)
    rule: str | None = None  # the label the rules give it (segment_rule), set by segment_report
    rule_kind: str | None = None  # what decided it: part, preamble, heading, keywords (None: no signal)
    numbered: bool = False  # a section numbered below the usual levels (numbered_sections): its heading joins the path

    @property
    def fixed(self) -> str | None:
        return {"preamble": "other", "review": "other", "closing": "other", "plans": "plans"}.get(self.kind)


@dataclass(frozen=True)
class LabelledParagraph:
    paragraph: Paragraph
    label: str | None


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


def segment_rule(segment: Segment, paragraphs: list[Paragraph], rules: LabelRules) -> tuple[str | None, str | None]:
    """(label, what decided it) from the rules: `part` (the plans part, the review container's
    summary, the closing), `preamble`, `heading` (its keywords are clear) or `keywords` (the
    unit's paragraphs vote with theirs); (None, None) when there is no signal."""
    if segment.fixed:
        return segment.fixed, "preamble" if segment.kind == "preamble" else "part"
    heading_scores = keyword_scores(segment.heading, rules, body=False)
    decided = _best(heading_scores)
    if decided:
        return decided, "heading"
    votes: Counter = Counter()
    for index in segment.members:
        votes.update(keyword_scores(paragraphs[index].text, rules, body=True))
    for label, score in heading_scores.items():
        votes[label] += HEADING_WEIGHT * score
    votes.pop("plans", None)
    decided = _best(votes)
    return decided, "keywords" if decided else None


def _numbering(para: Paragraph) -> tuple[str, int] | None:
    """(style, number counted from 0) of a paragraph that opens with a run-in or item number, else None."""
    folded = match_form(para.text)
    if para.level == 0 and (run_in := _RUN_IN.match(folded)):
        numeral = run_in.group(1) or run_in.group(2)
        return ("是" if run_in.group(1) else "第"), _NUMERALS.index(numeral)
    if para.level == 3 and (item := _ITEM.match(folded)):
        return ("1." if item.group(1) else "(1)"), int(item.group(1) or item.group(2)) - 1
    return None


def numbered_sections(paragraphs: list[Paragraph], container: int, closing: tuple[str, ...], rules: LabelRules) -> set[int]:
    """The paragraphs that open the sections of the review container headed at `container` (-1: of
    a report with no container, 一、 or （一） at all) when it numbers them below the usual levels:
    「1.」 or 「（1）」 items, 「一是」 or 「第一，」 run-in paragraphs; the first style with at least two,
    numbered in order from one. None when the container holds a numbered section of its own (一、
    or （一）) before the plans part, the closing or the end: a run-in list in a summary that
    numbered sections follow (or a lone 一是) is the summary's."""
    found: dict[str, list[tuple[int, int]]] = {}
    for i in range(container + 1, len(paragraphs)):
        para = paragraphs[i]
        if para.furniture or match_form(para.text).startswith(closing):
            if found:  # the body has ended (before it: a page's furniture, the salutation 各位代表：)
                break
            continue
        if para.level in (1, 2):
            if para.is_heading and is_plans_heading(para.heading, rules):
                break
            return set()
        if numbering := _numbering(para):
            found.setdefault(numbering[0], []).append((i, numbering[1]))
    for openers in found.values():  # in the order the styles first appear
        if len(openers) >= 2 and [number for _, number in openers] == list(range(len(openers))):
            return {i for i, _ in openers}
    return set()


def holds_sections(paragraphs: list[Paragraph], start: int, rules: LabelRules) -> bool:
    """Whether the 一、 heading at `start` is a review container its heading words do not name
    (「一、2023年工作总结」): its heading points to no label, and its （一） sub-headings point to
    two or more."""
    if _best(keyword_scores(paragraphs[start].heading, rules, body=False)):
        return False
    labels = set()
    for para in paragraphs[start + 1:]:
        if para.level == 1:
            break
        if para.level == 2 and para.is_heading:
            labels.add(_best(keyword_scores(para.heading, rules, body=False)))
    return len(labels - {None}) >= 2


def segment_report(paragraphs: list[Paragraph], rules: LabelRules | None = None) -> list[Segment]:
    """Cut one report's ordered paragraphs into consecutive segments (none empty)."""
    rules = rules or load_rules()
    closing = tuple(match_form(w) for w in rules.closing)
    segments = [Segment("preamble", "")]
    section_is_unit = False  # does the current 一、 section carry the label for its sub-sections?
    # paragraphs that open sections a review container (or a report with none) numbers lower (numbered_sections)
    numbered: set[int] = numbered_sections(paragraphs, -1, closing, rules)
    for i, para in enumerate(paragraphs):
        kind = segments[-1].kind
        in_body = kind in ("unit", "plans")
        # furniture after the body, or the closing appeal: the report has ended
        if in_body and (para.furniture or match_form(para.text).startswith(closing)):
            segments.append(Segment("closing", ""))
        elif i in numbered and kind != "plans":
            segments.append(Segment("unit", para.heading or topic(para.text), numbered=True))
        elif kind != "closing" and not para.furniture and para.level in (1, 2):
            prose = not para.is_heading  # a fused line opens a topic section, never a part
            if not prose and is_plans_heading(para.heading, rules):
                if kind != "plans":
                    segments.append(Segment("plans", para.heading))
            elif kind != "plans" and not prose and para.level == 1 and (
                    is_review_heading(para.heading, rules) or holds_sections(paragraphs, i, rules)):
                segments.append(Segment("review", para.heading))
                section_is_unit = False
                numbered |= numbered_sections(paragraphs, i, closing, rules)
            elif kind != "plans" and (para.level == 1 or not section_is_unit):
                segments.append(Segment("unit", para.heading))
                section_is_unit = para.level == 1
        segments[-1].members.append(i)
    segments = [s for s in segments if s.members]
    if not any(s.kind in ("unit", "review", "plans") for s in segments):
        # no structure at all (no heading, no numbered section): the rules still call it preamble,
        # but each paragraph is a unit of its own, so that a model weighs each against that rule;
        # one unit would take the label its paragraphs' mean favours, which may be none of theirs
        segments = [Segment("preamble", "", [i]) for s in segments for i in s.members]
    for segment in segments:  # each carries its rule and kind: callers never ask the rules again
        segment.rule, segment.rule_kind = segment_rule(segment, paragraphs, rules)
    return segments


def heading_paths(paragraphs: list[Paragraph], segments: list[Segment] | None = None) -> list[list[str]]:
    """Every paragraph's heading path, outermost first: the part heading (a review or plans
    container, 「今后工作建议」 over 「一、…」) when it is not the section itself, then the section
    and the sub-section. A heading line's path ends with itself; the preamble's and the
    closing's are empty. The heading of a section a review container numbers lower (「1.」, or a
    run-in 「一是…。」 sentence) follows the part heading."""
    segments = segments or segment_report(paragraphs)
    part_of: dict[int, str | None] = {}
    numbered_of: dict[int, str] = {}
    part = ""
    for segment in segments:
        if segment.kind in ("review", "plans"):
            part = segment.heading
        for index in segment.members:  # the closing sits under no heading: None
            part_of[index] = None if segment.kind == "closing" else part
            if segment.numbered:
                numbered_of[index] = segment.heading
    paths = []
    for i, p in enumerate(paragraphs):
        path = []
        for heading in (part_of[i], p.section, p.subsection, numbered_of.get(i)) if part_of[i] is not None else ():
            if heading and heading not in path:
                path.append(heading)
        paths.append(path)
    return paths


def label_paragraphs(paragraphs: list[Paragraph], rules: LabelRules | None = None) -> list[LabelledParagraph]:
    """Label one report's ordered paragraphs from its headings."""
    rules = rules or load_rules()
    labels: list[str | None] = [None] * len(paragraphs)
    for segment in segment_report(paragraphs, rules):
        for index in segment.members:
            labels[index] = segment.rule
    return [LabelledParagraph(paragraph=p, label=labels[i]) for i, p in enumerate(paragraphs)]
