"""`renda stats --compare`: the differences between two corpora, on small corpora written here."""

import random

import pytest

from apps.cli import main
from renda.records import Record
from training.corpus_compare import compare_corpora, distinguish, features

CLAUSES = ["听取审议专项工作报告", "组织代表实地察看", "梳理问题清单并交办", "跟踪督促整改落实", "召开座谈会听取意见",
           "深入乡镇开展调研", "提出审议意见十条", "推动出台配套措施", "走访企业和群众", "形成调研报告",
           "完善工作机制", "推动问题逐项销号", "邀请代表列席会议", "开展满意度测评", "汇总意见建议"]
OTHER_CLAUSES = ["修缮河堤码头", "放映露天电影", "举办龙舟比赛", "采摘春茶新芽", "整修古桥石阶",
                 "排演地方戏曲", "晾晒稻谷玉米", "编织竹篮草帽", "腌制咸菜腊肉", "清扫街巷庭院"]
SECTIONS = [("一、坚持党的领导", "leadership"), ("二、依法开展监督", "supervision"), ("三、加强代表工作", "deputy")]


def paragraph(rng: random.Random, clauses: list[str], opening: str = "") -> str:
    return opening + "，".join(rng.sample(clauses, 4)) + "。"


def write_corpus(folder, seed: int, clauses=CLAUSES, plans_opening: str = "", reports: int = 8):
    """Reports with three review sections and a plans part, their paragraphs drawn from `clauses`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for n in range(reports):
        lines = ["各位代表：", paragraph(rng, clauses)]
        for heading, _ in SECTIONS:
            lines += [heading] + [paragraph(rng, clauses) for _ in range(3)]
        lines += ["今后工作建议"] + [paragraph(rng, clauses, plans_opening) for _ in range(3)]
        (folder / f"report-{seed}-{n}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_planted_shortcut_is_surfaced(tmp_path):
    a = write_corpus(tmp_path / "a", 1, plans_opening="加强")
    b = write_corpus(tmp_path / "b", 2, plans_opening="常委会将")
    report = compare_corpora(str(a), str(b), folds=4)
    _, openings, words = [line.split(" | ") for line in report.splitlines() if line.startswith("| plans |")][:3]
    # imperative openings: all of A's plans paragraphs but its one heading line (今后工作建议), none of B's
    assert openings[3] == "96% / 0%"
    assert "加强 96%/0%" in words[3]  # the opening word itself, among the largest gaps
    _, _, review_words = [line.split(" | ") for line in report.splitlines() if line.startswith("| supervision |")][:3]
    assert "加强" not in review_words[3]  # review sections do not carry it
    # and the style → label view: in A an imperative opening points to plans, in B never
    pointer = next(line.split(" | ") for line in report.splitlines() if line.startswith("| opening: imperative |"))
    assert pointer[2] == "plans" and pointer[3].endswith("/ 0%")
    assert "## Telling A from B" in report and "balanced accuracy 0.500" in report


def test_distinguisher_near_chance_on_one_generator_and_high_on_different_ones(tmp_path):
    def records(folder):
        from renda.corpus import load_corpus

        return load_corpus([folder]).records

    same_a = records(write_corpus(tmp_path / "a", 11, reports=10))
    same_b = records(write_corpus(tmp_path / "b", 12, reports=10))
    alike = distinguish(same_a, same_b, folds=5)
    assert abs(alike.balanced - 0.5) < 0.15, alike

    other = records(write_corpus(tmp_path / "c", 13, clauses=OTHER_CLAUSES, reports=10))
    unlike = distinguish(same_a, other, folds=5)
    assert unlike.balanced > 0.9 and unlike.accuracy > 0.9, unlike
    assert unlike.balanced - alike.balanced > 0.3


@pytest.mark.parametrize(
    "text, kind, fmt",
    [
        ("（二）加强代表工作。组织代表培训三期，共培训代表三百人次。", "imperative", "fused"),
        ("一是加强代表工作，组织代表培训三期。", "imperative", "一是"),
        ("常委会全年听取审议专项工作报告12个，开展执法检查3次。", "subject", "plain"),
        ("报告指出，常委会将持续加强代表工作。", "news", "plain"),
        ("2024年，常委会将紧扣中心大局，依法履职。", "time", "plain"),
        ("紧扣民生开展监督。听取审议养老服务工作情况的报告。", "imperative", "run-in"),
        ("三、加强代表工作", "imperative", "一、"),
        ("今后工作建议", "time", "bare"),
    ],
)
def test_openings_and_heading_formats(text, kind, fmt):
    f = features(Record(report_id="r", text=text, label="plans"))
    assert (f.kind, f.fmt) == (kind, fmt)


def test_cli_writes_the_report(tmp_path, capsys):
    a = write_corpus(tmp_path / "a", 1, reports=4)
    b = write_corpus(tmp_path / "b", 2, reports=4)
    out = tmp_path / "out" / "compare.md"
    assert main(["stats", "--compare", str(a), str(b), "--out", str(out), "--folds", "3"]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text(encoding="utf-8") and printed.startswith("# Corpus comparison")
    assert main(["stats", "--corpus", str(a)]) == 0  # the counts still work as before
    assert "| **all** |" in capsys.readouterr().out
