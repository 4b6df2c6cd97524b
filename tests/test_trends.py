"""`renda plot`: shares per label over year, level and body, from a small reports table written
here (reports of invented bodies whose counts are known), as PNG and the CSV behind each plot."""

from __future__ import annotations

import csv
import math

import pytest

from apps.archive import commit_batch, report_row
from renda.labels import LABELS
from apps.trends import plot_trends, share_table

# (body, level, year, [(section label, characters), …]): one report each.
REPORTS = [
    ("雁湖县人大常委会", "county", 2020, [("supervision", 30), ("deputy", 10)]),
    ("雁湖县人大常委会", "county", 2021, [("supervision", 10), ("plans", 10)]),
    ("松岩市人大常委会", "city", 2020, [("legislation", 60), ("supervision", 20), ("plans", 20)]),
    ("碧岭省人大常委会", "provincial", 2021, [("legislation", 50), ("other", 50)]),
    ("全国人大常委会", "national", None, [("legislation", 10)]),  # year unknown: left out of `year`
]


def write_table(out):
    rows = []
    for i, (body, level, year, paragraphs) in enumerate(REPORTS):
        key = {"report_path": f"r{i}.txt", "report_id": f"r{i}", "body": body, "level": level, "year": year}
        rows.append(report_row(key, [{"section_label": label, "text": "字" * chars} for label, chars in paragraphs]))
    commit_batch(out, {"paragraphs": [], "reports": rows, "failed": []})
    return rows


def read_csv(path):
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_shares_mean_of_reports_and_pooled(tmp_path):
    rows = write_table(tmp_path)
    by_year = {row["year"]: row for row in share_table(rows, "year", "characters")}
    assert list(by_year) == [2020, 2021]
    # 2020: county report 30/40 supervision, city report 20/100: each report counts once.
    assert math.isclose(by_year[2020]["supervision"], (0.75 + 0.2) / 2)
    assert by_year[2020]["reports"] == 2
    assert all(math.isclose(sum(row[label] for label in LABELS), 1.0) for row in by_year.values())
    pooled = {row["year"]: row for row in share_table(rows, "year", "characters", pooled=True)}
    assert math.isclose(pooled[2020]["supervision"], 50 / 140)  # long reports count more
    # Paragraph shares: the 2021 county report is half supervision, half plans.
    county = share_table(rows, "level", "paragraphs")
    assert [row["level"] for row in county] == ["national", "provincial", "city", "county"]
    assert math.isclose(county[-1]["plans"], (0 + 0.5) / 2)


def test_plot_writes_png_and_csv_for_each_axis(tmp_path):
    write_table(tmp_path)
    for by in ("year", "level", "body"):
        written = plot_trends(tmp_path, by)
        assert sorted(p.name for p in written) == sorted(
            f"share_{m}_by_{by}.{ext}" for m in ("paragraphs", "characters") for ext in ("png", "csv"))
        for path in written:
            assert path.parent == tmp_path / "plots" and path.stat().st_size > 0
            if path.suffix == ".png":
                assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    level = read_csv(tmp_path / "plots" / "share_characters_by_level.csv")
    assert [row["level"] for row in level] == ["national", "provincial", "city", "county"]
    assert list(level[0]) == ["level", "reports", *LABELS]
    assert float(level[0]["legislation"]) == 1.0 and level[-1]["reports"] == "2"
    body = read_csv(tmp_path / "plots" / "share_paragraphs_by_body.csv")
    assert body[0]["body"] == "雁湖县人大常委会" and body[0]["reports"] == "2"  # most reports first
    year = read_csv(tmp_path / "plots" / "share_characters_by_year.csv")
    assert [row["year"] for row in year] == ["2020", "2021"]



def test_the_year_axis_is_in_whole_years(tmp_path):
    from unittest import mock

    from matplotlib.figure import Figure

    write_table(tmp_path)
    drawn: dict[str, list[str]] = {}
    save = Figure.savefig

    def recording(fig, path, *args, **kwargs):
        fig.canvas.draw()
        drawn[str(path)] = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
        return save(fig, path, *args, **kwargs)

    with mock.patch.object(Figure, "savefig", recording):
        plot_trends(tmp_path, "year")
    assert drawn and all(ticks and all(t.isdigit() for t in ticks) for ticks in drawn.values()), drawn  # no 2020.5


def test_plot_command_and_its_errors(tmp_path, capsys):
    from apps.cli import main

    assert main(["plot", str(tmp_path), "--by", "year"]) == 2  # no table yet
    assert "label-archive" in capsys.readouterr().err
    write_table(tmp_path)
    assert main(["plot", str(tmp_path), "--by", "body", "--out", str(tmp_path / "figs"), "--pooled", "--top", "2"]) == 0
    assert (tmp_path / "figs" / "share_characters_by_body.png").is_file()
    assert len(read_csv(tmp_path / "figs" / "share_characters_by_body.csv")) == 4  # the CSV has every body
    with pytest.raises(SystemExit):
        main(["plot", str(tmp_path), "--by", "month"])
