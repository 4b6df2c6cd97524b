"""Which congress gave a report, at what level, in what year: read from its title and subtitle,
else from its file path. Anything that cannot be read is None, never guessed.

- body: 「白石县人民代表大会常务委员会工作报告」 or 「白石县人大常委会工作报告」 → 白石县人大常委会;
  全国人民代表大会… → 全国人大常委会.
- level: from the body's last word: 全国 national; 省, 自治区 and the four municipalities
  provincial; 市, 州, 盟 city (a county-level 市 cannot be told apart without a gazetteer); 县, 区,
  旗 county. A path word (national, province, autonomous-region, city, county, district…) is the
  fallback.
- year: the first full date among the opening lines (the subtitle 「——2020年1月8日在…」, or a
  web page's 发布时间 2020-01-08; 「一九九五年二月…」 too), else a 4-digit year in the path.
"""

from __future__ import annotations

import re
import unicodedata

OPENING_LINES = 6  # title, subtitle and page furniture come first
_CJK = "\u4e00-\u9fff"
_TITLE = re.compile(rf"([{_CJK}]*)(?:人民代表大会常务委员会|人大常委会)工作报告")
_MUNICIPALITIES = ("北京市", "天津市", "上海市", "重庆市")  # provincial-level cities
# Suffix → level, longest first (自治区 before 区, 自治州 before 州).
_SUFFIXES = (("自治区", "provincial"), ("自治州", "city"), ("自治县", "county"), ("自治旗", "county"),
             ("省", "provincial"), ("市", "city"), ("州", "city"), ("盟", "city"),
             ("县", "county"), ("区", "county"), ("旗", "county"))
_PATH_LEVELS = (("national", "national"), ("autonomous-region", "provincial"), ("provincial", "provincial"),
                ("province", "provincial"), ("prefecture", "city"), ("city", "city"), ("county", "county"),
                ("district", "county"), ("banner", "county"))
_DATE = re.compile(r"((?:19|20)\d{2})(?:年\d{1,2}月\d{1,2}日|-\d{1,2}-\d{1,2})")
_ZH_DIGITS = {c: str(i) for i, c in enumerate("〇一二三四五六七八九")} | {"零": "0"}
_ZH_DATE = re.compile(r"([一二三四五六七八九〇零]{4})年[一二三四五六七八九十]{1,2}月")
_PATH_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")


def level_of(place: str) -> str | None:
    """The level of a place name (白石县 → county); None when its last word says nothing."""
    if place.startswith("全国"):
        return "national"
    if place in _MUNICIPALITIES:
        return "provincial"
    return next((level for suffix, level in _SUFFIXES if place.endswith(suffix)), None)


def title_place(lines: list[str]) -> str | None:
    """The place in the first title-like opening line: 「白石县人民代表大会常务委员会工作报告」 → 白石县,
    「县人大常委会工作报告：…」 → 县 (a level word only). None when no opening line is a title."""
    for line in lines[:OPENING_LINES]:
        match = _TITLE.search(unicodedata.normalize("NFKC", line).replace(" ", ""))
        if match:
            return match.group(1).lstrip("年") or None  # 「2024年白石县…」: the run starts after the year
    return None


def year_of(lines: list[str], path: str) -> int | None:
    for line in lines[:OPENING_LINES]:
        folded = unicodedata.normalize("NFKC", line)
        if match := _DATE.search(folded):
            return int(match.group(1))
        if match := _ZH_DATE.search(folded):
            return int("".join(_ZH_DIGITS[c] for c in match.group(1)))
    years = _PATH_YEAR.findall(path)
    return int(years[-1]) if years else None  # the file name's year, nearer than a folder's


def report_meta(lines: list[str], path: str) -> dict:
    """{body, level, year} of a report from its opening lines (title, subtitle) and its path."""
    place = title_place(lines)
    level = level_of(place) if place else None
    if level is None:
        lowered = path.lower()
        level = next((lvl for word, lvl in _PATH_LEVELS if re.search(rf"(?<![a-z]){word}(?![a-z])", lowered)), None)
    # 「县人大常委会工作报告」 names a level, not a body
    named = place is not None and level_of(place) is not None and place not in dict(_SUFFIXES)
    return {"body": f"{place}人大常委会" if named else None, "level": level, "year": year_of(lines, path)}
