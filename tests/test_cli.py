"""`renda classify` (and the help of every sub-command), through apps.cli.main on the tiny model."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from model.context import MAX_HEADING_CHARS, MAX_PATH_ITEMS
from model.loading import load_predictor
from apps.cli import build_parser, main
from renda.labels import LABELS
from renda.labelling import heading_paths
from renda.parsing import parse_report

PARAGRAPHS = [
    "常委会党组坚持把党的领导贯穿人大工作全过程。",
    "审议通过地方性法规两件，批准单行条例一件。",
    "围绕义务教育均衡发展开展专题调研，听取审议县政府专项工作报告，跟踪督办落实情况。",
    "组织代表开展集中视察活动三次，邀请代表列席常委会会议四十人次。",
]
SCORE_COLUMNS = [f"score_{label}" for label in LABELS]
PART, SECTION = "二、2025年主要任务", "（三）依法履行监督职责"
# Each PARAGRAPHS[i] with: heading and heading_path; heading_path only; heading only; no context.
CONTEXT_JSONL = [{"heading": SECTION, "heading_path": [PART]}, {"heading_path": [PART, SECTION]},
                 {"heading": "一、坚持党的领导", "heading_path": None}, {"heading": None}]
CONTEXT_CSV = [(SECTION, json.dumps([PART], ensure_ascii=False)), ("", f"{PART} › {SECTION}"), ("一、坚持党的领导", ""), ("", "")]
CONTEXT_PATHS = [[PART, SECTION], [PART, SECTION], ["一、坚持党的领导"], []]  # what the model reads for each


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_report) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-inputs")
    report = folder / "report.txt"
    report.write_text(sample_report, encoding="utf-8")
    lines = folder / "paragraphs.jsonl"
    lines.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" + ("\n" if i == 1 else "")
                             for i, t in enumerate(PARAGRAPHS)), encoding="utf-8")
    table = folder / "paragraphs.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "text", "note"])
    for i, text in enumerate(PARAGRAPHS):
        writer.writerow([i, text, "有逗号, 和 \"引号\""])
    table.write_text(buffer.getvalue(), encoding="utf-8")
    with_context = folder / "context.jsonl"
    with_context.write_text("".join(json.dumps({"text": text, **extra}, ensure_ascii=False) + "\n"
                                    for text, extra in zip(PARAGRAPHS, CONTEXT_JSONL)), encoding="utf-8")
    table_with_context = folder / "context.csv"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "heading", "heading_path"])
    for text, (heading, heading_path) in zip(PARAGRAPHS, CONTEXT_CSV):
        writer.writerow([text, heading, heading_path])
    table_with_context.write_text(buffer.getvalue(), encoding="utf-8")
    return {"txt": report, "jsonl": lines, "csv": table, "jsonl_context": with_context, "csv_context": table_with_context}


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return load_predictor(tiny_model)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def check_scores(row: dict) -> None:
    scores = {label: float(row[f"score_{label}"]) for label in LABELS}
    assert row["label"] in LABELS
    assert abs(sum(scores.values()) - 1) < 1e-3  # rounded to 4 places
    assert abs(float(row["score"]) - scores[row["label"]]) < 1e-9
    assert float(row["score"]) == max(scores.values())


# --- classify: the three input kinds, two output formats ---------------------------------------


def test_txt_report_to_jsonl(tiny_model, inputs, sample_report, predictor, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    code, stdout, stderr = run(["classify", inputs["txt"], "--model", tiny_model, "--out", out], capsys)
    assert code == 0, stderr
    assert stdout == ""
    rows = read_jsonl(out)
    paragraphs = parse_report(sample_report)
    assert f"{len(rows)} paragraphs labelled -> {out}" in stderr
    assert len(rows) == len(paragraphs)
    assert [r["index"] for r in rows] == list(range(len(rows)))
    assert [r["text"] for r in rows] == [p.text for p in paragraphs]
    assert all(r["file"] == str(inputs["txt"]) for r in rows)
    paths = heading_paths(paragraphs)
    for row, paragraph, path in zip(rows, paragraphs, paths):
        assert row["is_heading"] == paragraph.is_heading
        assert row["heading_path"] == path
        assert row["context"] is bool(path)
        assert row["source"] in {"heading", "model", "vote"}
        check_scores(row)
    assert sum("全县农村自来水普及率" in r["text"] for r in rows) == 1  # the cut line is joined
    # The labels are the model's, each paragraph read with its heading path.
    expected = predictor.predict([p.text for p in paragraphs], paths)
    assert [r["label"] for r in rows] == [p.label for p in expected]
    for row, want in zip(rows, expected):
        assert row["score"] == pytest.approx(want.score, abs=1e-4)


def test_jsonl_and_csv_inputs_to_csv(tiny_model, inputs, predictor, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    code, _, stderr = run(["classify", inputs["jsonl"], inputs["csv"], "--model", tiny_model, "--out", out], capsys)
    assert code == 0, stderr
    rows = read_csv(out)
    assert len(rows) == 2 * len(PARAGRAPHS)
    columns = list(rows[0])
    assert columns[:5] == ["file", "index", "text", "label", "score"]
    for column in SCORE_COLUMNS + ["windows"]:
        assert column in columns
    assert [r["file"] for r in rows] == [str(inputs["jsonl"])] * len(PARAGRAPHS) + [str(inputs["csv"])] * len(PARAGRAPHS)
    assert [r["text"] for r in rows] == PARAGRAPHS * 2
    assert [int(r["index"]) for r in rows] == list(range(len(PARAGRAPHS))) * 2
    expected = predictor.predict(PARAGRAPHS)
    for i, row in enumerate(rows):
        check_scores(row)
        assert row["label"] == expected[i % len(PARAGRAPHS)].label
        assert int(row["windows"]) >= 1


def test_jsonl_and_csv_heading_columns_are_read_as_context(tiny_model, inputs, predictor, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    code, _, stderr = run(["classify", inputs["jsonl_context"], inputs["csv_context"], inputs["jsonl"], "--model", tiny_model,
                           "--out", out], capsys)
    assert code == 0, stderr
    rows = read_jsonl(out)
    assert len(rows) == 3 * len(PARAGRAPHS)
    with_context, without = rows[: 2 * len(PARAGRAPHS)], rows[2 * len(PARAGRAPHS):]
    expected = predictor.predict(PARAGRAPHS, CONTEXT_PATHS)
    plain = predictor.predict(PARAGRAPHS)
    for i, row in enumerate(with_context):
        want, path = expected[i % len(PARAGRAPHS)], CONTEXT_PATHS[i % len(PARAGRAPHS)]
        assert row["heading_path"] == path
        assert row["heading"] == (path[-1] if path else "")
        assert row["context"] is bool(path) is want.context
        assert row["label"] == want.label and row["score"] == pytest.approx(want.score, abs=1e-4)
        check_scores(row)
    assert [r["context"] for r in without] == [False] * len(PARAGRAPHS)
    assert [(r["heading"], r["heading_path"]) for r in without] == [("", [])] * len(PARAGRAPHS)
    assert [r["label"] for r in without] == [p.label for p in plain]
    assert [r["score_plans"] for r in with_context[:2]] != [r["score_plans"] for r in without[:2]]  # the context was read

    # CSV output writes the path as a JSON array, and reads its own output back the same.
    table = tmp_path / "labels.csv"
    code, _, stderr = run(["classify", inputs["jsonl_context"], "--model", tiny_model, "--out", table], capsys)
    assert code == 0, stderr
    written = read_csv(table)
    assert [json.loads(r["heading_path"]) for r in written] == CONTEXT_PATHS
    assert [r["context"] for r in written] == [json.dumps(bool(path)) for path in CONTEXT_PATHS]
    again = tmp_path / "again.jsonl"
    code, _, stderr = run(["classify", table, "--model", tiny_model, "--out", again], capsys)
    assert code == 0, stderr
    assert [(r["label"], r["heading_path"]) for r in read_jsonl(again)] == [(r["label"], r["heading_path"]) for r in rows[:4]]


def test_csv_output_of_a_report_has_report_columns(tiny_model, inputs, sample_report, tmp_path, capsys):
    out = tmp_path / "report.csv"
    code, _, stderr = run(["classify", inputs["txt"], "--model", tiny_model, "--out", out], capsys)
    assert code == 0, stderr
    rows = read_csv(out)
    assert len(rows) == len(parse_report(sample_report))
    assert {"is_heading", "heading", "label", "score", "section_label", *SCORE_COLUMNS} <= set(rows[0])
    assert {r["is_heading"] for r in rows} == {"true", "false"}  # JSON's booleans, as in the JSONL output
    headings = [r["text"] for r in rows if r["is_heading"] == "true"]
    assert "一、坚持党的领导，把牢人大工作正确政治方向" in headings and "2024年主要任务" in headings
    for row in rows:
        check_scores(row)


def test_format_flag_and_standard_output(tiny_model, inputs, tmp_path, capsys):
    code, stdout, stderr = run(["classify", inputs["jsonl"], "--model", tiny_model], capsys)
    assert code == 0, stderr
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert [r["text"] for r in rows] == PARAGRAPHS
    code, stdout, stderr = run(["classify", inputs["jsonl"], "--model", tiny_model, "--format", "csv"], capsys)
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [r["text"] for r in rows] == PARAGRAPHS and set(SCORE_COLUMNS) <= set(rows[0])
    # --format wins over the suffix of --out.
    out = tmp_path / "labels.txt"
    code, _, stderr = run(["classify", inputs["csv"], "--model", tiny_model, "--out", out, "--format", "csv"], capsys)
    assert code == 0, stderr
    assert [r["text"] for r in read_csv(out)] == PARAGRAPHS


# --- classify: bad input → exit 2, the file (and line) named, nothing written ------------------


def expect_failure(argv: list, capsys, out: Path, *fragments: str) -> str:
    code, stdout, stderr = run([*argv, "--out", out], capsys)
    assert code == 2, (code, stderr)
    # (model loading may print progress first; the error is the last line)
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in message, (fragment, stderr)
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))  # no temporary file left behind either
    return message


@pytest.mark.parametrize("name, data, message", [
    ("report.doc", b"\xd0\xcf\x11\xe0" + bytes(64), ".doc file is not read (save it as .docx); read are plain text"),
    ("scan.png", b"\x89PNG\r\n", "an image is not read"),
    ("report.docx", "一、坚持党的领导".encode(), "not a .docx file (not a zip archive"),
])
def test_unsupported_or_false_file(tiny_model, tmp_path, capsys, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.jsonl", str(path), message)


@pytest.mark.parametrize("kind", ["gb18030", "html", "pdf", "docx"])
def test_a_report_as_published_reads_like_its_text(tiny_model, inputs, sample_report, tmp_path, capsys, kind):
    """The same report as GB18030 text, a web page, a PDF and a .docx: the same paragraphs and labels."""
    from renda.parsing import is_furniture
    from training.formats import SUFFIX, render

    path = tmp_path / f"report-{kind}{SUFFIX[kind]}"
    path.write_bytes(render(kind, sample_report, sample_report.splitlines()[0]))
    code, _, stderr = run(["classify", inputs["txt"], "--model", tiny_model, "--out", tmp_path / "txt.jsonl"], capsys)
    assert code == 0, stderr
    code, _, stderr = run(["classify", path, "--model", tiny_model, "--out", tmp_path / "other.jsonl"], capsys)
    assert code == 0, stderr
    fmt = "text" if kind == "gb18030" else kind
    assert f"{path}: read as {fmt}" in stderr and ("(gb18030)" in stderr) == (kind == "gb18030")
    want, got = read_jsonl(tmp_path / "txt.jsonl"), read_jsonl(tmp_path / "other.jsonl")
    body = [(r["text"], r["section_label"]) for r in want if not is_furniture(r["text"])]
    assert [(r["text"], r["section_label"]) for r in got if not is_furniture(r["text"])] == body


def test_missing_file(tiny_model, inputs, tmp_path, capsys):
    missing = tmp_path / "nowhere.txt"
    expect_failure(["classify", inputs["jsonl"], missing, "--model", tiny_model], capsys, tmp_path / "out.jsonl",
                   f"{missing}: no such file")


def test_jsonl_line_without_text(tiny_model, inputs, tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": PARAGRAPHS[0]}, ensure_ascii=False) + "\n" + json.dumps({"body": "人大"}) + "\n",
                    encoding="utf-8")
    # A good file first: nothing of it is written either.
    expect_failure(["classify", inputs["jsonl"], path, "--model", tiny_model], capsys, tmp_path / "out.csv",
                   f"{path}:2:", "`text`")


@pytest.mark.parametrize("line, message", [
    ('{"text": "   "}', "`text`"),
    ('{"text": 3}', "`text`"),
    ('["人大工作"]', "`text`"),
    ('{"text": "人大', "not valid JSON"),
])
def test_other_bad_jsonl_lines(tiny_model, tmp_path, capsys, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": PARAGRAPHS[0]}, ensure_ascii=False) + "\n" + line + "\n", encoding="utf-8")
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.jsonl", f"{path}:2:", message)


@pytest.mark.parametrize("extra, message", [
    ({"heading": 3}, "`heading` must be a string"),
    ({"heading": ["一、立法"]}, "`heading` must be a string"),
    ({"heading_path": "一、立法"}, "`heading_path` must be a list of strings"),
    ({"heading_path": ["一、立法", 2]}, "`heading_path` must be a list of strings"),
    ({"heading_path": ["一、立法"] * (MAX_PATH_ITEMS + 1)}, f"the limit is {MAX_PATH_ITEMS}"),
    ({"heading_path": ["一、立法", "审" * (MAX_HEADING_CHARS + 1)]}, "`heading_path[1]`"),
    ({"heading": "审" * (MAX_HEADING_CHARS + 1)}, f"`heading` has {MAX_HEADING_CHARS + 1} characters"),
])
def test_bad_context_in_jsonl(tiny_model, tmp_path, capsys, extra, message):
    path = tmp_path / "bad.jsonl"
    good = {"text": PARAGRAPHS[0], "heading": SECTION, "heading_path": [PART]}
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in [good, {"text": PARAGRAPHS[1], **extra}]),
                    encoding="utf-8")
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.jsonl", f"{path}:2:", message)


@pytest.mark.parametrize("heading_path, message", [
    ('[1, 2]', "JSON array of strings"),
    ('["一、立法", ', "not valid JSON"),
    (json.dumps(["一、立法"] * (MAX_PATH_ITEMS + 1), ensure_ascii=False), f"the limit is {MAX_PATH_ITEMS}"),
    (" › ".join(["一、立法"] * (MAX_PATH_ITEMS + 1)), f"the limit is {MAX_PATH_ITEMS}"),
])
def test_bad_heading_path_in_csv(tiny_model, tmp_path, capsys, heading_path, message):
    path = tmp_path / "bad.csv"
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["text", "heading_path"], [PARAGRAPHS[0], f"{PART} › {SECTION}"], [PARAGRAPHS[1], heading_path]])
    path.write_text(buffer.getvalue(), encoding="utf-8")
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.csv", f"{path}:3:", "`heading_path`", message)


def test_csv_without_text_column(tiny_model, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("id,paragraph\n1,人大工作\n", encoding="utf-8")
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.csv", f"{path}:1:", "`text` column")


def test_csv_with_an_empty_text(tiny_model, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("id,text\n1,人大工作\n2,\n", encoding="utf-8")
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.csv", f"{path}:3:", "empty `text`")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_non_utf8_paragraph_file(tiny_model, tmp_path, capsys, suffix):
    """Paragraph files are data written by programs: UTF-8 only (a report's text may be in any encoding)."""
    path = tmp_path / f"gbk{suffix}"
    body = {".jsonl": '{"text": "人大"}\n{"text": "第二行"}', ".csv": "text\n人大\n第二行"}[suffix]
    first, second = body.rsplit("\n", 1)
    path.write_bytes(first.encode("utf-8") + b"\n" + second.encode("gbk"))
    line = body.count("\n") + 1
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.jsonl", f"{path}:{line}:", "not UTF-8")


def test_empty_file(tiny_model, tmp_path, capsys):
    path = tmp_path / "empty.txt"
    path.write_text(" \n\n", encoding="utf-8")
    expect_failure(["classify", path, "--model", tiny_model], capsys, tmp_path / "out.jsonl", str(path), "empty")


def test_a_folder_that_is_not_a_model(inputs, tmp_path, capsys):
    expect_failure(["classify", inputs["jsonl"], "--model", tmp_path], capsys, tmp_path / "out.jsonl",
                   str(tmp_path), "renda_model.json")


def test_bad_arguments_exit_2(inputs, capsys):
    for argv in (["classify"], ["classify", str(inputs["jsonl"]), "--format", "xml"], ["nonsense"], []):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "usage:" in capsys.readouterr().err


# --- help ---------------------------------------------------------------------------------------


def subcommands() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices


def test_every_subcommand_is_known():
    assert {"data", "baseline", "base-model", "train", "eval", "check-labeller", "classify", "serve"} <= set(subcommands())


def test_top_level_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in subcommands():
        assert name in out


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: renda {command}")
    parser = subcommands()[command]
    options = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    positionals = [a.dest for a in parser._actions if not a.option_strings]
    assert options
    for name in options + positionals:
        assert name in out, (command, name)


def test_classify_help_names_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    out = capsys.readouterr().out
    for fragment in ("--model", "--out", "--format", "{jsonl,csv}", ".txt", ".jsonl", ".csv"):
        assert fragment in out


def test_seed_zero_is_a_seed(tmp_path):
    """`--seed 0` is honoured, not replaced by the default (0 is falsy)."""
    from apps.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    starter = Path(__file__).resolve().parent.parent / "data" / "starter"
    for path in sorted(starter.glob("*.txt"))[:8]:
        (corpus / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    for seed in ("0", "13"):
        assert main(["data", "--corpus", str(corpus), "--out", str(tmp_path / f"data-{seed}"), "--seed", seed]) == 0
        assert json.loads((tmp_path / f"data-{seed}" / "summary.json").read_text())["seed"] == int(seed)


@pytest.mark.parametrize("variable, value, says", [
    ("ADMIN_TOKEN", "short", "at least 8 characters"),
    ("ADMIN_TOKEN", "", "an empty value is refused"),
    ("MAX_PARAGRAPHS", "abc", "valid integer"),
])
def test_a_bad_environment_variable_is_named_by_every_command(monkeypatch, capsys, variable, value, says):
    # --help included: settings are read before the parser; the token's value is never echoed
    monkeypatch.setenv(variable, value)
    for argv in (["--help"], ["classify", "no-such-file.txt"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: environment variable {variable}: ") and says in err and "Traceback" not in err
        assert value == "" or value not in err


def test_a_report_file_the_service_would_refuse_is_refused_by_the_cli_too(tmp_path, tiny_model, capsys):
    report = tmp_path / "r.txt"
    report.write_text("一、立法工作\n制定条例三件。\x00\n", encoding="utf-8")
    code, _, err = run(["classify", report, "--model", tiny_model], capsys)
    assert code == 2 and "control character (U+0000)" in err and "(line 2)" in err
    code, _, err = run(["classify", tmp_path, "--model", tiny_model], capsys)  # a folder is no file
    assert code == 2 and "is a folder, not a file" in err


def test_bad_settings_and_broken_folders_are_one_line_errors(tmp_path, tiny_model, capsys):
    """A setting out of range, a broken model folder or an unreadable config: `error: …` and status 2,
    no traceback; a negative thread count is refused by the parser."""
    code, _, err = run(["train", "--data", tmp_path / "none", "--out", tmp_path / "m", "--set", "epochs=-1"], capsys)
    assert code == 2 and err.startswith("error: epochs:") and "Traceback" not in err
    code, _, err = run(["train", "--data", tmp_path / "none", "--out", tmp_path / "m", "--set", "pooling=max"], capsys)
    assert code == 2 and "pooling" in err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "renda_model.json").write_text('{"kind": ', encoding="utf-8")
    report = tmp_path / "r.txt"
    report.write_text("一、立法工作\n制定条例三件。\n", encoding="utf-8")
    code, _, err = run(["classify", report, "--model", broken], capsys)
    assert code == 2 and "error: " in err and "renda_model.json is not valid JSON" in err and "Traceback" not in err
    for out in (tmp_path, report / "labels.jsonl"):  # a folder; under a file: refused before the model runs
        code, _, err = run(["classify", report, "--model", tiny_model, "--out", out], capsys)
        assert code == 2 and ("is a folder" in err or "is a file, not a folder" in err)
    with pytest.raises(SystemExit) as refused:
        main(["train", "--data", str(tmp_path), "--threads", "-1"])
    assert refused.value.code == 2 and "--threads: -1 is below 0" in capsys.readouterr().err
