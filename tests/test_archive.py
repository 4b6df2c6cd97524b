"""`renda label-archive`: tables, bad files, resuming after an interruption, and the Ray engine
against the local one. The archive is written here: invented reports of invented places (no text
from ../shared/corpus), in nested folders, one JSONL paragraph file with two reports, and two bad
files. The model is the tiny BERT of conftest.py."""

from __future__ import annotations

import csv
import json
import math
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import skip_unless_required

from apps import archive
from renda.parsing import is_furniture
from apps.archive import label_archive, read_table
from renda.labels import LABELS
from renda.report_meta import report_meta

STARTER = Path(__file__).resolve().parent.parent / "data" / "starter"

REPORTS = {
    "county/yanhu-2023.txt": """雁湖县人民代表大会常务委员会工作报告
——2023年1月12日在雁湖县第十八届人民代表大会第二次会议上
各位代表：
我受县人民代表大会常务委员会委托，向大会报告工作，请予审议。
过去一年的主要工作
一年来，县人大常委会召开会议八次，听取审议专项工作报告十一个，各项工作取得新进展。
一、坚持党的领导
常委会党组坚持重大事项请示报告制度，全年向县委报告工作十四件次。
二、依法开展监督
听取审议县政府关于耕地保护工作的报告，跟踪督办问题九个。
对农产品质量安全法实施情况开展执法检查，提出意见建议六条。
三、支持代表依法履职
新建代表联络站四个，组织代表进站接待群众三百余人次。
今后工作建议
一、紧扣中心大局，增强监督实效
围绕乡村振兴开展专题询问，推动问题整改落实。
二、加强常委会自身建设
完善学习制度，提高常委会组成人员履职能力。
各位代表！让我们团结一心，为建设美丽雁湖而努力奋斗！
""",
    "city/songyan-city-report.txt": """松岩市人大常委会工作报告
发布时间：2022-02-10 09:30
各位代表：
2021年主要工作
一、以高质量立法保障发展
制定松岩市湖泊保护条例，修改市容环境卫生管理条例，审查批准规范性文件八件。
二、依法监督政府工作
听取审议市政府关于预算执行情况的报告，开展专题询问一次。
三、密切同人大代表的联系
邀请代表列席常委会会议六十人次，代表建议办结率百分之百。
四、加强自身建设
开展机关作风建设活动，修订常委会议事规则。
2022年主要任务
一、继续推进地方立法
计划制定历史建筑保护条例，修改物业管理条例。
二、增强监督刚性
持续开展营商环境执法检查，跟踪审计查出问题整改。
""",
    "province/2021/biling.txt": """碧岭省人大常委会工作报告
各位代表：
我受省人大常委会委托，向大会报告工作。
一、坚持党的全面领导
常委会党组认真落实省委部署，把党的领导贯穿人大工作全过程。
二、立法工作
审议法规草案十九件，通过十五件，批准设区的市法规二十三件。
三、监督工作
听取审议省政府专项工作报告十二个，检查五部法律法规实施情况。
四、代表工作
办理代表建议六百余件，推动解决一批群众关心的问题。
""",
    "old/luchuan-district.txt": """鹭川区人民代表大会常务委员会工作报告
——一九九六年三月五日在鹭川区第十届人民代表大会第四次会议上
各位代表：
一、认真开展工作评议
对区政府六个部门开展工作评议，促进依法行政。
二、加强代表工作
组织代表视察城区建设，收集意见建议四十条。
""",
}

JSONL_ROWS = [
    {"report_id": "yanhu-2024", "text": "制定年度监督工作计划，听取审议县政府生态环境保护工作报告。", "heading": "二、依法开展监督"},
    {"report_id": "yanhu-2024", "text": "对水污染防治法实施情况开展执法检查。", "heading": "二、依法开展监督"},
    {"report_id": "songyan-2024", "text": "完善代表联络站建设标准，代表进站履职一千余人次。", "heading": "三、代表工作"},
    {"report_id": "yanhu-2024", "text": "新建代表联络站两个，代表建议全部按期办结。", "heading": "三、支持代表履职"},
    {"report_id": "songyan-2024", "text": "审议通过河道管理条例，开展立法后评估一项。", "heading": "一、立法工作"},
]


def write_archive(root: Path, bad: bool = True) -> Path:
    for rel, text in REPORTS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    (root / "paragraphs").mkdir()
    (root / "paragraphs" / "rows-2024.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in JSONL_ROWS), encoding="utf-8")
    if bad:
        (root / "bad").mkdir()
        (root / "bad" / "gbk.txt").write_bytes("雁湖县人大常委会工作报告".encode("gbk"))  # read: GB18030 reads GBK
        (root / "bad" / "empty.txt").write_text("  \n", encoding="utf-8")
        (root / "bad" / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(100))  # refused by name
        (root / "bad" / "cut.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog")  # truncated
        (root / "bad" / "notes.json").write_text("{}", encoding="utf-8")  # not a report: not listed
    return root


@pytest.fixture(scope="module")
def predictor(tiny_model):
    from model.loading import load_predictor

    return load_predictor(tiny_model, threads=1)


def rows_of(out: Path, name: str) -> list[dict]:
    return read_table(out, name).to_pylist()


def assert_same_tables(a: Path, b: Path) -> None:
    """Row for row. Scores may differ in the last bits: the model sees other batches (other padding)."""
    for name in archive.TABLES:
        left, right = rows_of(a, name), rows_of(b, name)
        assert len(left) == len(right), name
        for x, y in zip(left, right):
            assert x.keys() == y.keys()
            for key in x:
                if isinstance(x[key], float):
                    assert math.isclose(x[key], y[key], rel_tol=1e-5, abs_tol=1e-6), (name, key, x, y)
                else:
                    assert x[key] == y[key], (name, key, x, y)


def test_report_meta_agrees_with_the_starter_list():
    """Body, level and year read from each starter report's title, subtitle or file name agree
    with data/starter/reports.tsv whenever they can be read; only one news story names no body."""
    found = 0
    for row in csv.DictReader((STARTER / "reports.tsv").open(encoding="utf-8"), delimiter="\t"):
        lines = [line for line in (STARTER / row["file"]).read_text(encoding="utf-8").splitlines() if line.strip()]
        meta = report_meta(lines, row["file"])
        assert meta["level"] == row["level"] and meta["year"] == int(row["year"]), row
        assert meta["body"] in (row["body"], None), row
        found += meta["body"] is not None
    assert found >= 41


@pytest.mark.parametrize("title, path, expected", [
    ("全国人民代表大会常务委员会工作报告", "x.txt", ("全国人大常委会", "national", None)),
    ("北京市人民代表大会常务委员会工作报告", "a/2019/x.txt", ("北京市人大常委会", "provincial", 2019)),
    ("解读｜雁湖县人大常委会工作报告", "x.txt", ("雁湖县人大常委会", "county", None)),
    ("松川自治州人大常委会工作报告（摘要）", "x.txt", ("松川自治州人大常委会", "city", None)),
    ("碧岭自治区人民代表大会常务委员会工作报告", "x.txt", ("碧岭自治区人大常委会", "provincial", None)),
    ("县人大常委会工作报告：依法履职", "x-2011.txt", (None, "county", 2011)),
    ("报告指出，一年来常委会依法履职。", "songyan-city-2015.txt", (None, "city", 2015)),
])
def test_report_meta_from_title_and_path(title, path, expected):
    assert tuple(report_meta([title], path).values()) == expected


def test_tables_bad_files_and_the_run_goes_on(tmp_path, predictor):
    root = write_archive(tmp_path / "archive")
    summary = label_archive(root, tmp_path / "out", predictor, batch_files=3, progress=False)
    assert summary["reports"] == 7 and summary["failed"] == 3

    failed = {row["report_path"]: row for row in rows_of(tmp_path / "out", "failed")}
    assert set(failed) == {"bad/empty.txt", "bad/old.doc", "bad/cut.pdf"}
    assert "empty" in failed["bad/empty.txt"]["reason"]
    assert ".doc file is not read (save it as .docx)" in failed["bad/old.doc"]["reason"]
    assert "not a readable pdf file" in failed["bad/cut.pdf"]["reason"]

    reports = {(r["report_path"], r["report_id"]): r for r in rows_of(tmp_path / "out", "reports")}
    assert set(reports) == {(rel, Path(rel).stem) for rel in REPORTS} | {("bad/gbk.txt", "gbk"),
        ("paragraphs/rows-2024.jsonl", "yanhu-2024"), ("paragraphs/rows-2024.jsonl", "songyan-2024")}
    assert (reports[("bad/gbk.txt", "gbk")]["format"], reports[("bad/gbk.txt", "gbk")]["encoding"]) == ("text", "gb18030")
    assert reports[("county/yanhu-2023.txt", "yanhu-2023")]["encoding"] == "utf-8"
    meta = {key[0]: (r["body"], r["level"], r["year"]) for key, r in reports.items() if key[0].endswith(".txt")}
    assert meta == {"bad/gbk.txt": ("雁湖县人大常委会", "county", None),"county/yanhu-2023.txt": ("雁湖县人大常委会", "county", 2023),
                    "city/songyan-city-report.txt": ("松岩市人大常委会", "city", 2022),
                    "province/2021/biling.txt": ("碧岭省人大常委会", "provincial", 2021),
                    "old/luchuan-district.txt": ("鹭川区人大常委会", "county", 1996)}

    paragraphs = rows_of(tmp_path / "out", "paragraphs")
    for key, report in reports.items():
        mine = [p for p in paragraphs if (p["report_path"], p["report_id"]) == key]
        assert report["paragraphs"] == len(mine) and report["characters"] == sum(len(p["text"]) for p in mine)
        assert sum(report[f"paragraphs_{label}"] for label in LABELS) == len(mine)
        assert math.isclose(sum(report[f"share_characters_{label}"] for label in LABELS), 1.0)
        assert [p["position"] for p in mine] == sorted(p["position"] for p in mine)
        assert all(p["section_label"] in LABELS and p["source"] in ("heading", "vote", "model") for p in mine)

    # A .txt report is every paragraph the parser finds, each with its heading path.
    yanhu = [p for p in paragraphs if p["report_path"] == "county/yanhu-2023.txt"]
    assert [p["text"] for p in yanhu][:2] == REPORTS["county/yanhu-2023.txt"].splitlines()[:2]
    assert next(p for p in yanhu if p["text"].startswith("围绕乡村振兴"))["heading_path"] == [
        "今后工作建议", "一、紧扣中心大局，增强监督实效"]
    # JSONL rows are grouped by report_id (interleaved rows too), read with their headings.
    rows = [p for p in paragraphs if p["report_id"] == "yanhu-2024"]
    assert [p["text"] for p in rows] == [r["text"] for r in JSONL_ROWS if r["report_id"] == "yanhu-2024"]
    assert rows[0]["heading_path"] == ["二、依法开展监督"]

    # Run again: everything is skipped, nothing changes.
    before = {name: rows_of(tmp_path / "out", name) for name in archive.TABLES}
    again = label_archive(root, tmp_path / "out", predictor, progress=False)
    # (The JSONL file is read again, to find its reports: both are done.)
    assert again["reports"] == again["failed"] == 0 and again["skipped_files"] == 8
    assert {name: rows_of(tmp_path / "out", name) for name in archive.TABLES} == before


class Interrupted(Exception):
    pass


class FailsAfter:
    """The real predictor until its `calls`-th batch, which raises (a crash mid-run)."""

    def __init__(self, inner, calls: int):
        self.inner, self.calls = inner, calls

    def predict(self, texts, contexts=None):
        self.calls -= 1
        if self.calls <= 0:
            raise Interrupted
        return self.inner.predict(texts, contexts)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_an_interrupted_run_resumes_to_the_same_tables(tmp_path, predictor, monkeypatch):
    root = write_archive(tmp_path / "archive")
    label_archive(root, tmp_path / "whole", predictor, batch_files=2, progress=False)

    out = tmp_path / "resumed"
    # 1. A crash while labelling the third batch (the first, two bad files, needs no model): the
    # two batches before it are kept.
    with pytest.raises(Interrupted):
        label_archive(root, out, FailsAfter(predictor, 2), batch_files=2, progress=False)
    kept = rows_of(out, "reports") + rows_of(out, "failed")
    assert len({row["report_path"] for row in kept}) == 4  # two batches of two files

    # 2. A crash between writing a batch's paragraphs and its reports part (as a kill would
    # leave it): that batch is not committed, readers never see it, and the next run redoes it.
    real_write = archive._write_part

    def dies_on_reports(path, table):
        if path.parent.name == "reports":
            raise Interrupted
        real_write(path, table)

    monkeypatch.setattr(archive, "_write_part", dies_on_reports)
    with pytest.raises(Interrupted):
        label_archive(root, out, predictor, batch_files=2, progress=False)
    monkeypatch.setattr(archive, "_write_part", real_write)
    assert len(list((out / "paragraphs").glob("part-*"))) == len(list((out / "reports").glob("part-*"))) + 1
    assert {row["report_path"] for row in rows_of(out, "paragraphs")} <= {row["report_path"] for row in kept}

    # 3. Resumed: the same tables as the run that was never interrupted, and nothing half-written left.
    summary = label_archive(root, out, predictor, batch_files=2, progress=False)
    assert summary["skipped_files"] == 4
    assert_same_tables(tmp_path / "whole", out)
    names = {table: sorted(p.name for p in (out / table).iterdir()) for table in archive.TABLES}
    assert names["paragraphs"] == names["reports"] == names["failed"]
    assert not [n for ns in names.values() for n in ns if not n.startswith("part-")]


def test_out_is_refused_for_another_model(tmp_path, predictor):
    from renda.records import DataError

    root = write_archive(tmp_path / "archive", bad=False)
    label_archive(root, tmp_path / "out", predictor, progress=False)
    manifest = tmp_path / "out" / archive.MANIFEST
    manifest.write_text(json.dumps({"model_id": "another-model"}), encoding="utf-8")
    with pytest.raises(DataError, match="another-model"):
        label_archive(root, tmp_path / "out", predictor, progress=False)


def test_cli_label_archive_and_plot(tmp_path, tiny_model, capsys):
    from apps.cli import main

    root = write_archive(tmp_path / "archive")
    assert main(["label-archive", str(root), "--out", str(tmp_path / "out"), "--model", str(tiny_model),
                 "--threads", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["reports"] == 7 and summary["failed"] == 3
    assert main(["plot", str(tmp_path / "out"), "--by", "level"]) == 0
    assert (tmp_path / "out" / "plots" / "share_characters_by_level.png").is_file()
    assert main(["label-archive", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2"), "--model", str(tiny_model)]) == 2


@contextmanager
def time_limit(seconds: int):
    """Fail, rather than hang CI, if Ray never gets going."""
    def stop(signum, frame):
        raise TimeoutError(f"the Ray run took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_ray_engine_equals_the_local_engine(tmp_path, tiny_model, predictor):
    """Ray started here with 2 CPUs: one actor (1 CPU, the tiny model), parse tasks beside it."""
    try:
        import ray
    except ImportError:
        skip_unless_required("ray", "Ray is an optional extra: pip install -e '.[scale]'")
    from apps.archive_ray import label_archive_ray

    root = write_archive(tmp_path / "archive")
    label_archive(root, tmp_path / "local", predictor, batch_files=2, progress=False)
    with time_limit(240):
        try:
            summary = label_archive_ray(root, tmp_path / "ray", tiny_model, batch_files=2, actors=1, actor_cpus=1,
                                        num_cpus=2, progress=False)
        finally:
            if ray.is_initialized():
                ray.shutdown()
    assert summary["reports"] == 7 and summary["failed"] == 3
    assert_same_tables(tmp_path / "local", tmp_path / "ray")
    assert len(list((tmp_path / "ray" / "reports").glob("part-*.parquet"))) >= 4  # 9 files, 2 a batch
    # Either engine resumes the other's run: the local one finds nothing left to do.
    again = label_archive(root, tmp_path / "ray", predictor, progress=False)
    assert again["reports"] == again["failed"] == 0 and again["skipped_files"] == 8


def test_an_archive_of_every_format_with_broken_files(tmp_path, predictor):
    """One folder mixing the same reports as UTF-8 and GB18030 text, web pages, PDF and .docx, and
    broken files: every good file labelled with the .txt's paragraphs, labels, body, level and year
    and its format and encoding in its row; every broken one in `failed` with its reason."""
    from training.formats import SUFFIX, render

    root = tmp_path / "mixed"
    for kind in ("txt", "gb18030", "html", "pdf", "docx"):
        for rel, text in REPORTS.items():
            path = root / kind / Path(rel).with_suffix(".txt" if kind == "txt" else SUFFIX[kind])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode() if kind == "txt" else render(kind, text, text.splitlines()[0]))
    good = render("pdf", REPORTS["county/yanhu-2023.txt"], "雁湖")
    broken = {"broken/cut.pdf": good[: len(good) // 2], "broken/scan.jpg": b"\xff\xd8\xff\xe0",
              "broken/old.doc": b"\xd0\xcf\x11\xe0" + bytes(64), "broken/fake.docx": b"PK\x03\x04 cut short",
              "broken/empty.html": b"<html><body></body></html>"}
    for rel, data in broken.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    summary = label_archive(root, tmp_path / "out", predictor, batch_files=4, progress=False)
    assert summary["reports"] == 5 * len(REPORTS) and summary["failed"] == len(broken)
    failed = {row["report_path"]: row["reason"] for row in rows_of(tmp_path / "out", "failed")}
    assert set(failed) == set(broken) and all(failed.values())
    reports = rows_of(tmp_path / "out", "reports")
    paragraphs = rows_of(tmp_path / "out", "paragraphs")

    def of(kind: str) -> tuple[dict, set]:
        meta = {r["report_id"]: (r["body"], r["level"], r["year"], r["format"], r["encoding"])
                for r in reports if r["report_path"].startswith(f"{kind}/")}
        rows = {(p["report_id"], p["text"], p["section_label"]) for p in paragraphs if p["report_path"].startswith(f"{kind}/")}
        return meta, rows

    want_meta, want_rows = of("txt")
    for kind, fmt, encoding in (("gb18030", "text", "gb18030"), ("html", "html", "utf-8"), ("pdf", "pdf", None), ("docx", "docx", None)):
        meta, rows = of(kind)
        assert meta == {k: (*m[:3], fmt, encoding) for k, m in want_meta.items()}, kind
        assert want_rows <= rows and all(is_furniture(t) for _, t, _ in rows - want_rows), (kind, rows - want_rows)
