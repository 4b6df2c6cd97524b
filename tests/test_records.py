import json

import pytest

from renda.corpus import load_corpus
from renda.records import DataError, atomic_write_text, read_jsonl, read_text_file, write_jsonl

GOOD = {"report_id": "r1", "text": "听取审议专项工作报告十个。", "label": "supervision", "source": "ignored"}


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_the_format_and_ignores_other_keys(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", [json.dumps(GOOD, ensure_ascii=False)])
    [record] = read_jsonl(path)
    assert record.report_id == "r1" and record.label == "supervision" and record.heading == "" and record.position is None


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"report_id": "r1", "label": "other"}', "missing `text`"),
        ('{"report_id": "r1", "text": "条例。", "label": "budget"}', "unknown label 'budget'"),
        ('{"report_id": "r1", "text": "   ", "label": "other"}', "`text`: `text` is empty"),
        ('{"report_id": "r1", "text": "条例。"}', "missing `label`"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "each line must be a JSON object"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [json.dumps(GOOD, ensure_ascii=False), line])
    with pytest.raises(DataError) as error:
        read_jsonl(path)
    assert str(error.value).startswith(f"{path}:2: ") and message in str(error.value)


def test_empty_and_non_utf8_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.txt: the file is empty"):
        read_text_file(empty)
    gbk = tmp_path / "gbk.txt"
    gbk.write_bytes("第一行\n".encode() + "第二行是GBK编码".encode("gbk"))
    with pytest.raises(DataError, match=r"gbk.txt:2: not UTF-8"):
        read_text_file(gbk)
    with pytest.raises(DataError, match="gbk.txt:2"):
        load_corpus([tmp_path / "gbk.txt"])
    # a report wholly in GB18030, as many are published: read as `renda classify` reads it
    published = tmp_path / "published" / "baisha-2024.txt"
    published.parent.mkdir()
    published.write_bytes("一、立法工作\n制定条例三件，修改条例两件。\n二、监督工作\n听取审议专项工作报告九个。\n".encode("gb18030"))
    records = load_corpus([published.parent]).records
    assert [r.text for r in records][-1] == "听取审议专项工作报告九个。" and {r.label for r in records} >= {"legislation", "supervision"}


def test_missing_corpus_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_corpus([tmp_path / "nowhere"])


def test_two_reports_of_one_name_are_refused_not_merged(tmp_path):
    """A report's id is its file name: a/x.txt and b/x.txt would be one report to the splits."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "x.txt").write_text(f"一、立法工作\n{folder}制定条例三件。\n", encoding="utf-8")
    with pytest.raises(DataError, match="another report has the same name"):
        load_corpus([tmp_path])
    assert load_corpus([tmp_path / "a", str(tmp_path / "a" / "x.txt")]).records  # one file named twice is one report


def test_atomic_write_leaves_nothing_half_written(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [GOOD])
    before = target.read_text(encoding="utf-8")

    # Fail inside atomic_write_text, after its temporary file is written, at the rename.
    from unittest import mock

    with mock.patch("renda.records.os.replace", side_effect=OSError("disk gone")), pytest.raises(OSError, match="disk gone"):
        atomic_write_text(target, json.dumps(GOOD) * 3)
    assert target.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # the temporary file is gone too


def test_written_files_and_published_folders_take_the_umask_mode(tmp_path):
    """Temporary files and folders are created private (0600, 0700); what is published takes the mode
    a plain write would, so a service running as another user can read a model folder."""
    import os
    import stat

    from model.publish import staged_directory
    from renda.records import atomic_write_text, created_mode

    previous = os.umask(0o022)
    try:
        assert created_mode() == 0o644 and created_mode(directory=True) == 0o755
        atomic_write_text(tmp_path / "a.json", "{}")
        with staged_directory(tmp_path / "model", ("a.json",)) as staging:
            (staging / "a.json").write_text("{}", encoding="utf-8")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
