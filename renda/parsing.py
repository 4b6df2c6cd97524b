"""Report text → ordered paragraphs with their heading structure.

Real report texts come from web pages: paragraphs split by newlines or blank lines, full-width
indentation, lines cut mid-sentence by page breaks, headings at several levels (一、 / （一） /
1. / ——), bare part headings (过去一年的主要工作, 今后工作建议), sub-headings fused with their
paragraph, and page furniture. This module turns that into clean `Paragraph`s; it knows the
shape of headings and which open a part of the report (the review, the plans part), but not what
sections mean (that is `renda.labelling`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from renda.labels import LabelRules, load_rules

# Chinese characters: the unified ideographs with Extension A, the compatibility ideographs and the
# supplementary planes (Extension B to H): one definition for the service, the CLI and the archive.
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff\U00030000-\U000323af]")
# Ideographs newer than this Python's Unicode tables (14.0): Extension H (15.0) and I (15.1) are
# unassigned to `unicodedata` but are Chinese characters a report may hold (rare names and places).
_NEWER_IDEOGRAPHS = ((0x2EBF0, 0x2EE5F), (0x31350, 0x323AF))


def _newer_ideograph(ch: str) -> bool:
    return any(low <= ord(ch) <= high for low, high in _NEWER_IDEOGRAPHS)


def has_chinese(text: str) -> bool:
    return CJK.search(text) is not None


# Line ends, tabs, and the controls that break lines: vertical tab, form feed (pdftotext's page
# break) and NEL, all read as a new line (split_lines).
_LINE_BREAKING = "\x0b\x0c\x85"
_ALLOWED_CONTROL = {"\n", "\r", "\t", *_LINE_BREAKING}


def bad_character(text: str) -> str | None:
    """What is wrong with the first character a report's text must not hold (a control character
    but line ends and tabs, an unpaired surrogate, a private-use or unassigned code point), and where
    (character and line), or None."""
    for position, ch in enumerate(text):
        category = unicodedata.category(ch)
        if category == "Cs":
            what = "an unpaired surrogate"
        elif category == "Cc" and ch not in _ALLOWED_CONTROL:
            what = "a control character"
        elif category == "Co" or (category == "Cn" and not _newer_ideograph(ch)):
            what = "an unassigned or private-use code point"
        else:
            continue
        return f"holds {what} (U+{ord(ch):04X}) at character {position} (line {len(split_at_breaks(text[:position]))})"
    return None


def split_at_breaks(text: str) -> list[str]:
    """The text's lines: cut at \\n, \\r\\n, \\r, the Unicode line and paragraph separators and the
    line-breaking controls (vertical tab, form feed, NEL)."""
    text = text.replace("\r\n", "\n")
    for ch in "\r\u2028\u2029" + _LINE_BREAKING:
        text = text.replace(ch, "\n")
    return text.split("\n")


# Levels: 1 = section (一、 or a bare part heading), 2 = sub-section （一）, 3 = item (1. / ——).
_NUMERAL = "一二三四五六七八九十百零〇"
_LEVEL1 = re.compile(rf"^[{_NUMERAL}]+\s*[、.．]\s*")
_LEVEL2 = re.compile(rf"^[（(]\s*[{_NUMERAL}]+\s*[）)]\s*")
_LEVEL3 = re.compile(r"^(?:\d{1,2}\s*[.．、](?!\d)|[（(]\d{1,2}[）)]|——|--|—)\s*")
_TERMINAL = tuple("。！？!?；;：:”\"」』）)】…")
_RUNNING_TEXT = re.compile(r"[。，,；;]")
_SPACES = re.compile(r"[ \t\u3000\u00a0\u2002\u2003\u200b\ufeff]+")
_DATE_LINE = re.compile(r"^\d{4}[-年./]\d{1,2}[-月./]\d{1,2}日?(?:\s*\d{1,2}:\d{2}(?::\d{2})?)?$")
# 「——2024年1月18日在…会议上」: the subtitle under a report's title, not a dash item.
# 「2024-01-20 来源：…」, 「发布日期 2024年1月20日 作者：…」: a web page's byline.
_BYLINE = re.compile(r"^(?:发布(?:时间|日期)[:：]?)?\d{4}[-年./]\d{1,2}[-月./]\d{1,2}日?(?:\d{1,2}:\d{2}(?::\d{2})?)?"
                     r"(?:来源|作者|编辑|浏览|点击|阅读|字号|责任编辑)")
_SUBTITLE = re.compile(r"^[—-]{1,2}\s*(?:\d{4}年\d{1,2}月\d{1,2}日|[〇一二三四五六七八九零]{4}年[一二三四五六七八九十]{1,2}月)")
# A heading longer than this (after its number) is prose, not a heading.
MAX_HEADING_CHARS = 64


@dataclass(frozen=True)
class Paragraph:
    text: str
    is_heading: bool
    level: int  # heading level (1-3) of a heading or fused heading; 0 for a body paragraph
    heading: str  # the heading text this line opens (for a fused heading, its topic part)
    section: str  # top-level heading above (or this line's own, for a section heading)
    subsection: str  # sub-section heading above within the section ("" if none)
    position: int
    furniture: bool = False  # page furniture / meta line (来源, 返回顶部, dates…)

    def to_dict(self) -> dict:
        return asdict(self)


def normalise_line(line: str) -> str:
    """Strip indentation and odd spaces; keep the text itself as the report wrote it."""
    line = "".join(ch for ch in line if ch in "\t" or unicodedata.category(ch) != "Cc")
    return _SPACES.sub(" ", line).strip()


@functools.cache
def _traditional_to_simplified() -> dict[int, str]:
    """Traditional characters that are no simplified character (OpenCC's tables), each to its
    simplified form: 監→监, 後→后, 會→会. A simplified text is left exactly as it is."""
    import opencc

    folder = Path(opencc.__file__).parent / "dictionary"

    def table(name: str) -> dict[str, str]:
        rows = (line.rstrip("\n").split("\t") for line in (folder / name).read_text(encoding="utf-8").splitlines())
        return {row[0]: row[1].split(" ")[0] for row in rows if len(row) == 2 and len(row[0]) == 1}

    simplified = table("STCharacters.txt")
    return str.maketrans({t: s for t, s in table("TSCharacters.txt").items() if s != t and t not in simplified})


def match_form(text: str) -> str:
    """A copy for matching only: NFKC folds full-width punctuation and digits, and traditional
    characters are read as simplified, so that the rules (renda/labels.toml) read a Big5 report too."""
    return unicodedata.normalize("NFKC", text).translate(_traditional_to_simplified()).replace(" ", "")


# Part headings: which headings open the review or the plans part, by the words of
# renda/labels.toml (the labeller, renda.labelling, reads what sections mean).
_NUMBER = re.compile(r"^(?:[一二三四五六七八九十]+[、.．]|[（(][一二三四五六七八九十]+[）)])\s*")
_PLANS_START = re.compile(r"^(?:今后|新的一年|新一年|今年|明年|下一步|下步|20\d\d年(?:的)?(?:主要|工作|重点))")
# After a time that looks forward, these nouns make a plans part's heading (「2024年工作要点」); after
# 今年/明年/下一步… plain 工作 does too (「今年工作」), where after a year it may be the year reviewed.
_PLANS_NOUNS = ("任务", "安排", "打算", "计划", "要点", "谋划", "重点工作")
_FORWARD = re.compile(r"^(?:今后|新的一年|新一年|今年|明年|下一步|下步)")
# A part heading is short: longer headings with a plans word are topic headings
# (a leadership heading that promises to carry out the party committee's 工作安排 is no plans part).
MAX_PART_HEADING = 20


def _core(heading: str) -> str:
    return _NUMBER.sub("", match_form(heading))


def is_plans_heading(heading: str, rules: LabelRules) -> bool:
    core = _core(heading)
    forward = _FORWARD.match(core) and "以来" not in core  # 今年以来: since the year began, a review
    if _PLANS_START.match(core) and len(core) <= MAX_PART_HEADING + 4 and (forward or not is_review_heading(heading, rules)) and (
            any(word in core for word in rules.plans + _PLANS_NOUNS) or (forward and "工作" in core)):
        return True
    return len(core) <= MAX_PART_HEADING and any(word in core for word in rules.plans)


def is_review_heading(heading: str, rules: LabelRules) -> bool:
    core = _core(heading)
    return len(core) <= MAX_PART_HEADING + 4 and any(word in core for word in rules.review)


def is_furniture(text: str) -> bool:
    folded = match_form(text)
    if _DATE_LINE.match(folded) or _SUBTITLE.match(folded) or _BYLINE.match(folded):
        return True
    return any(folded.startswith(match_form(word)) for word in load_rules().furniture)


def heading_shape(text: str) -> tuple[int, str, bool]:
    """(level, heading text, fused) for a line that opens a heading, else (0, "", False).

    A fused heading is a numbered line that goes on as a paragraph: 「（一）坚持…。把…」.
    Its heading is the part up to the first 。.
    """
    folded = match_form(text)
    for level, pattern in ((1, _LEVEL1), (2, _LEVEL2), (3, _LEVEL3)):
        marker = pattern.match(folded)
        if not marker:
            continue
        rest = folded[marker.end():]
        if not rest:
            return 0, "", False
        stop = rest.find("。")
        if 0 <= stop < len(rest) - 1 or len(rest) > MAX_HEADING_CHARS:
            return level, topic(text), True
        return level, text, False
    return 0, "", False


def topic(text: str) -> str:
    """The heading part of a fused heading (or a run-in one, 「一是…。」): the original text up to its first 。."""
    cut = text.find("。")
    return text[: cut + 1] if cut >= 0 else text[:MAX_HEADING_CHARS]


def is_bare_heading(text: str) -> bool:
    """A part heading with no number: 过去一年的主要工作, 今后工作建议, 2024年主要任务."""
    folded = match_form(text)
    if len(folded) > 24 or _RUNNING_TEXT.search(folded) or folded.endswith(_TERMINAL):
        return False
    rules = load_rules()
    return any(word in folded for word in rules.review + rules.plans) or is_plans_heading(text, rules)


def _ends_open(line: str) -> bool:
    """A line cut by a page break: running text that stops without closing punctuation."""
    folded = match_form(line)
    return (
        len(folded) >= 20
        and not folded.endswith(_TERMINAL)
        and bool(_RUNNING_TEXT.search(folded))
        and not is_furniture(line)
        and not (heading_shape(line)[0] and not heading_shape(line)[2])
    )


def starts_new(line: str) -> bool:
    """A line that always opens a paragraph: a heading (numbered or bare), or page furniture."""
    return bool(heading_shape(line)[0]) or is_furniture(line) or is_bare_heading(line)


def split_lines(text: str) -> list[str]:
    """Non-empty lines of a report, with lines cut mid-sentence joined back."""
    lines = [normalise_line(line) for line in split_at_breaks(text)]
    merged: list[str] = []
    for line in lines:
        if not line:
            continue
        if merged and _ends_open(merged[-1]) and not starts_new(line):
            merged[-1] += line
        else:
            merged.append(line)
    return merged


def parse_lines(lines: list[str]) -> list[Paragraph]:
    """Paragraphs from lines already split one paragraph a line (no cut-line joining)."""
    paragraphs: list[Paragraph] = []
    section = subsection = ""
    for position, text in enumerate(lines):
        text = normalise_line(text)
        furniture = is_furniture(text)
        level, heading, fused = (0, "", False) if furniture else heading_shape(text)
        if not level and not furniture and is_bare_heading(text):
            level, heading, fused = 1, text, False
        if level == 1:
            section, subsection = heading, ""
        elif level == 2:
            subsection = heading
        paragraphs.append(
            Paragraph(
                text=text,
                is_heading=bool(level) and not fused,
                level=level,
                heading=heading,
                section=section,
                subsection=subsection,
                position=position,
                furniture=furniture,
            )
        )
    return paragraphs


def parse_report(text: str) -> list[Paragraph]:
    """Split one report's text into its ordered paragraphs."""
    return parse_lines(split_lines(text))
