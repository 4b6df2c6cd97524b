import json
from collections import Counter

import pytest

from renda.records import DataError
from training.dataset import assign_splits, build_dataset, load_hf, load_split
from renda.records import Record


def make_report(title: str, topic: str) -> str:
    return "\n".join([
        f"{title}人大常委会工作报告",
        "各位代表：",
        "一、坚持党的领导",
        f"认真落实{topic}县委决策部署，严格执行请示报告制度。",
        "二、依法开展监督",
        f"听取审议{topic}专项工作报告，开展执法检查。",
        "三、加强代表工作",
        f"建设{topic}代表联络站，办理代表建议。",
        "今后工作建议",
        f"继续加强{topic}监督工作。",
    ])


@pytest.fixture
def small_corpus(tmp_path):
    root = tmp_path / "corpus"
    folder = root / "reports"
    folder.mkdir(parents=True)
    for i, name in enumerate("甲乙丙丁戊己庚辛"):
        (folder / f"county-{i}.txt").write_text(make_report(f"{name}县", f"第{i}项"), encoding="utf-8")
    # a hand-labelled JSONL that repeats one paragraph of a report: deduplicated, JSONL wins
    (root / "pinned.jsonl").write_text(
        json.dumps({"report_id": "county-0", "text": "认真落实第0项县委决策部署，严格执行请示报告制度。", "label": "self_building"},
                   ensure_ascii=False) + "\n", encoding="utf-8")
    return root


def test_splits_grouped_by_report_deterministic_and_deduplicated(small_corpus, tmp_path):
    out = tmp_path / "ds"
    summary = build_dataset([small_corpus], out, seed=3, dev_fraction=0.15, test_fraction=0.2)
    reports = {split: set(info["reports"]) for split, info in summary["splits"].items()}
    assert not (reports["train"] & reports["dev"]) and not (reports["train"] & reports["test"]) and not (reports["dev"] & reports["test"])
    assert all(reports.values())
    rows = [r for split in ("train", "dev", "test") for r in load_split(out, split)]
    texts = Counter(r.text for r in rows)
    assert max(texts.values()) == 1  # repeated lines (各位代表：, headings) kept once
    pinned = [r for r in rows if r.text.startswith("认真落实第0项")]
    assert [r.label for r in pinned] == ["self_building"]
    hf = load_hf(out)
    assert hf["train"].features["label"].names[0] == "leadership" and len(hf["train"]) == summary["splits"]["train"]["paragraphs"]
    again = build_dataset([small_corpus], tmp_path / "ds2", seed=3, dev_fraction=0.15, test_fraction=0.2)
    assert again["splits"] == summary["splits"]
    other_seed = build_dataset([small_corpus], tmp_path / "ds3", seed=4, dev_fraction=0.15, test_fraction=0.2)
    assert other_seed["splits"]["test"]["reports"] != summary["splits"]["test"]["reports"]


def test_test_split_can_be_drawn_from_one_corpus(small_corpus, tmp_path):
    pool = {"county-6", "county-7"}
    records = [Record(report_id=f"county-{i}", text=f"第{i}段", label="other") for i in range(8) for _ in range(3)]
    split_of = assign_splits(records, seed=1, dev_fraction=0.15, test_fraction=0.2, test_pool=pool)
    assert {r for r, s in split_of.items() if s == "test"} <= pool


def test_too_few_reports(tmp_path):
    (tmp_path / "one.txt").write_text(make_report("甲县", "一"), encoding="utf-8")
    with pytest.raises(DataError, match="at least 3 reports"):
        build_dataset([tmp_path], tmp_path / "ds", seed=1, dev_fraction=0.15, test_fraction=0.2)
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("bad.jsonl", '{"report_id": "a", "text": "制定条例。", "label": "law"}\n', "bad.jsonl:1: `label`: unknown label 'law'"),
        ("bad.jsonl", '{"report_id": "a", "label": "other"}\n', "bad.jsonl:1: missing `text`"),
        ("empty.txt", "", "empty.txt: the file is empty"),
        ("gbk.txt", None, "gbk.txt:2: not UTF-8"),  # UTF-8 and GBK lines mixed (a file wholly GBK is read)
    ],
)
def test_make_data_stops_on_bad_input_and_writes_nothing(small_corpus, tmp_path, capsys, name, content, expected):
    from apps.cli import main

    path = small_corpus / name
    if content is None:
        path.write_bytes("第一行\n".encode() + "第二行是GBK编码".encode("gbk"))
    else:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "ds"
    assert main(["data", "--corpus", str(small_corpus), "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and expected in message
    assert not out.exists() and not list(tmp_path.glob(".ds*"))
