"""`renda plot`: each label's share of the reports over year, level or body, from the `reports`
table of `renda label-archive`, as PNG, with the numbers behind each plot as CSV.

A group's share of a label is, by default, the mean of its reports' shares (each report counts
once, however long); `pooled` sums the group's paragraphs or characters instead (long reports
count more). Reports whose year, level or body could not be read are left out of that axis.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

from renda.labels import LABELS
from renda.records import DataError, atomic_write, atomic_write_text

AXES = ("year", "level", "body")
MEASURES = ("paragraphs", "characters")
LEVELS = ("national", "provincial", "city", "county")


def share_table(reports: list[dict], by: str, measure: str, pooled: bool = False) -> list[dict]:
    """One row per value of `by` (in order: years ascending, levels national → county, bodies
    by most reports): the value, its number of reports, and each label's share."""
    groups: dict = {}
    for report in reports:
        if report[by] is not None:
            groups.setdefault(report[by], []).append(report)
    if by == "year":
        order = sorted(groups)
    elif by == "level":
        order = sorted(groups, key=lambda v: (LEVELS.index(v) if v in LEVELS else len(LEVELS), v))
    else:
        order = sorted(groups, key=lambda v: (-len(groups[v]), v))
    rows = []
    for value in order:
        members = groups[value]
        if pooled:
            total = sum(r[measure] for r in members) or 1
            shares = {label: sum(r[f"{measure}_{label}"] for r in members) / total for label in LABELS}
        else:
            shares = {label: sum(r[f"share_{measure}_{label}"] for r in members) / len(members) for label in LABELS}
        rows.append({by: value, "reports": len(members), **shares})
    return rows


def _cjk_font() -> str | None:
    """An installed font with Chinese glyphs, for body names (matplotlib's own fonts have none,
    and its font cache may predate the system's CJK fonts, so those are added when found)."""
    from matplotlib import font_manager

    def pick() -> str | None:
        names = {font.name for font in font_manager.fontManager.ttflist}
        return next((n for n in ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei") if n in names),
                    None) or next((n for n in sorted(names) if "CJK" in n), None)

    if pick() is None:
        for path in font_manager.findSystemFonts():
            if re.search(r"cjk|wqy|wenquanyi|simhei|sourcehansans", Path(path).name, re.IGNORECASE):
                try:
                    font_manager.fontManager.addfont(path)
                except Exception:  # a font file matplotlib cannot read: try the next
                    continue
    return pick()


def draw(rows: list[dict], by: str, measure: str, path: Path, title: str) -> None:
    """Years as lines (a trend); levels and bodies as stacked bars (each sums to the whole)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    font = _cjk_font()
    with plt.rc_context({"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]}), warnings.catch_warnings():
        # With no CJK font installed, Chinese names show as boxes: one note in the README, not a warning a glyph.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        colors = plt.get_cmap("tab10").colors
        if by == "year":
            fig, ax = plt.subplots(figsize=(9, 4.8))
            years = [row["year"] for row in rows]
            for i, label in enumerate(LABELS):
                ax.plot(years, [row[label] for row in rows], marker="o", markersize=3, color=colors[i % 10], label=label)
            ax.set_xlabel("year")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole years, never 2021.5
            ax.set_ylabel(f"share of {measure}")
        else:
            fig, ax = plt.subplots(figsize=(9, max(2.5, 0.35 * len(rows) + 1.5)))
            names = [f"{row[by]} ({row['reports']})" for row in rows]
            left = [0.0] * len(rows)
            for i, label in enumerate(LABELS):
                values = [row[label] for row in rows]
                ax.barh(names, values, left=left, color=colors[i % 10], label=label)
                left = [a + b for a, b in zip(left, values)]
            ax.invert_yaxis()  # first group on top
            ax.set_xlabel(f"share of {measure} (reports in brackets)")
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
        fig.tight_layout()
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
        plt.close(fig)


def to_csv(rows: list[dict], by: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[by, "reports", *LABELS])
    writer.writeheader()
    writer.writerows({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def plot_trends(archive: Path | str, by: str, out: Path | str | None = None, pooled: bool = False,
                top: int = 30) -> list[Path]:
    """share_<measure>_by_<by>.png and .csv, for paragraphs and characters, under `out`
    (default ARCHIVE/plots). A body plot shows the `top` bodies with most reports; its CSV, all."""
    from apps.archive import read_table

    if by not in AXES:
        raise ValueError(f"--by must be one of {', '.join(AXES)}")
    archive = Path(archive)
    if not (archive / "reports").is_dir():
        raise DataError(archive, "no `reports` table here: run `renda label-archive` first")
    reports = read_table(archive, "reports").to_pylist()
    out = Path(out) if out else archive / "plots"
    written = []
    for measure in MEASURES:
        rows = share_table(reports, by, measure, pooled)
        if not rows:
            raise DataError(archive, f"no report here has a known {by}")
        stem = f"share_{measure}_by_{by}"
        atomic_write_text(out / f"{stem}.csv", to_csv(rows, by))
        how = "pooled" if pooled else "mean of reports"
        shown = rows[:top] if by == "body" else rows
        draw(shown, by, measure, out / f"{stem}.png", f"Share of {measure} per label by {by} ({how}, {sum(r['reports'] for r in rows)} reports)")
        written += [out / f"{stem}.png", out / f"{stem}.csv"]
    return written
