"""A wheel built from the repo installs into a fresh venv and labels a report: the label rules and the
training recipe are package data, found without the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = "翠屏县人大常委会工作报告\n各位代表：\n一、坚持党的领导\n常委会党组认真落实请示报告制度。\n二、依法履行监督职责\n听取审议县政府专项工作报告。\n"


def run(command: list, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-3000:])
    return result


def test_a_wheel_installs_into_a_fresh_venv_and_labels_a_report(tmp_path, tiny_model):
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist", ROOT], tmp_path)
    wheel = next((tmp_path / "dist").glob("renda_sections-*.whl"))
    run([sys.executable, "-m", "venv", tmp_path / "venv"], tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip())
    # The dependencies (torch, transformers…) from this environment, as a plain path: its .pth files
    # (the editable install of this repo among them) are not read, so `renda` comes from the wheel alone.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], tmp_path)

    where = run([python, "-c", "import renda, renda.labels, training.config; print(renda.__file__); "
                                 "print(renda.labels.LABELS_FILE.is_file(), training.config.CONFIG_FILE.is_file())"], tmp_path)
    module, found = where.stdout.split("\n")[:2]
    assert Path(module).is_relative_to(site) and found == "True True", where.stdout

    (tmp_path / "report.txt").write_text(REPORT, encoding="utf-8")
    run([tmp_path / "venv" / "bin" / "renda", "classify", "report.txt", "--model", tiny_model, "--out", "labels.jsonl"], tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows][3] == "常委会党组认真落实请示报告制度。"
    assert all(r["section_label"] and r["source"] for r in rows)
