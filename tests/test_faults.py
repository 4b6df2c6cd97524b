"""Faults: a model folder that is missing or broken, a training run killed outright, a service
stopped under load, and `make serve` next to an existing model (it must never retrain it)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.helpers import free_port
from fastapi.testclient import TestClient

from apps.cli import main
from serving.main import create_app
from serving.service import ModelService
from tests.conftest import ROOT, STARTER, TINY_OVERRIDES
from tests.test_service import OK, Recording, settings

# --- make serve: trains only when MODEL_DIR holds no model -------------------------------------


def dry_run_serve(model_dir: Path, *variables: str) -> str:
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MODEL_DIR", "CORPUS")}
    done = subprocess.run(["make", "-n", "serve", f"MODEL_DIR={model_dir}", *variables], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_serve_never_retrains_an_existing_model(tmp_path):
    model = tmp_path / "mine"
    model.mkdir()
    (model / "renda_model.json").write_text('{"kind": "bert", "fingerprint": "trained on another corpus"}', encoding="utf-8")
    for variables in ((), ("CORPUS=tests/fixtures", "SEED=99")):  # another corpus and seed: still served as it is
        plan = dry_run_serve(model, *variables)
        assert f"serve --model {model}" in plan
        for step in ("renda train", "renda data", "renda base-model"):
            assert step not in plan, plan


def test_make_serve_trains_when_there_is_no_model(tmp_path):
    for model in (tmp_path / "empty", tmp_path / "absent"):
        if model.name == "empty":
            model.mkdir()
        plan = dry_run_serve(model)
        assert "renda train --data build/dataset-" in plan and f"--out {model}" in plan, plan
        assert plan.index("renda train") < plan.index(f"serve --model {model}")


def test_make_data_rebuilds_when_a_report_is_taken_out(tmp_path):
    """A report removed from the corpus leaves no newer file behind; the corpus's file list does
    change, and the dataset is rebuilt instead of going on holding the removed report."""
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("a.txt", "b.txt"):
        (corpus / name).write_text("一、立法工作\n制定条例两件。\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CORPUS")}

    def plan() -> str:
        done = subprocess.run(["make", "-n", "data", f"CORPUS={corpus}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    first = plan()
    assert "renda data" in first
    dataset = ROOT / first.split("--out ")[1].split()[0]
    listing = ROOT / "build" / f"corpus-{dataset.name.removeprefix('dataset-')}.list"
    try:
        dataset.mkdir(parents=True)
        (dataset / "summary.json").write_text("{}", encoding="utf-8")  # as if built just now
        assert "renda data" not in plan()  # up to date
        (corpus / "b.txt").unlink()
        assert "renda data" in plan()  # the list changed: rebuilt
        assert listing.read_text(encoding="utf-8").split() == [str(corpus / "a.txt")]
    finally:
        shutil.rmtree(dataset, ignore_errors=True)
        listing.unlink(missing_ok=True)


# --- a missing or broken model folder: /healthz 200, /readyz 503 with a one-line reason ---------


def corrupt_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # a copy cut short


def stored(key: str, value):
    """Breaks a copy by storing `value` under `key` in its renda_model.json."""
    def breaks(folder: Path) -> None:
        meta_path = folder / "renda_model.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta_path.write_text(json.dumps({**meta, key: value}), encoding="utf-8")
    return breaks


BROKEN = {
    # name: (how to break a good copy, fragments the reason must contain)
    "no folder": (lambda d: shutil.rmtree(d), ["renda_model.json"]),
    "empty folder": (lambda d: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in d.iterdir()], ["renda_model.json"]),
    "renda_model.json cut short": (lambda d: (d / "renda_model.json").write_text('{"kind": "bert", ', encoding="utf-8"),
                                   ["renda_model.json is not valid JSON"]),
    "renda_model.json not an object": (lambda d: (d / "renda_model.json").write_text("[1, 2]", encoding="utf-8"),
                                       ["renda_model.json", "kind"]),
    "renda_model.json binary": (lambda d: (d / "renda_model.json").write_bytes(b"\xff\xfe\x00garbage"),
                                ["renda_model.json is not valid JSON"]),
    "weights cut short": (corrupt_weights, ["cannot load the model", "SafetensorError"]),
    "weights missing": (lambda d: (d / "model.safetensors").unlink(), ["cannot load the model", "model.safetensors"]),
    "weights garbage": (lambda d: (d / "model.safetensors").write_bytes(b"\x00garbage" * 100), ["SafetensorError"]),
    "config garbage": (lambda d: (d / "config.json").write_text("{model_type: bert", encoding="utf-8"),
                       ["config.json is not valid JSON"]),
    "training config missing": (lambda d: (d / "training_config.json").unlink(), ["training_config.json"]),
    "tokenizer missing": (lambda d: (d / "tokenizer.json").unlink(), ["cannot load the model", "tokenizer"]),
    # every value the folder stores is checked at load, never first used inside a request
    "combiner malformed": (stored("combiner", {"part": "eight"}), ["combiner part must be a finite number"]),
    "combiner unknown key": (stored("combiner", {"rules": 1.0}), ["combiner must be an object"]),
    "temperature zero": (stored("temperature", 0), ["temperature must be a positive number"]),
    "temperature text": (stored("temperature_alone", "hot"), ["temperature_alone must be a positive number"]),
    "fusion outside the folder": (stored("fusion", {"model": "../ngram", "weight": 0.5, "weight_alone": 0.5}),
                                  ["fusion model must be the name of a folder"]),
    "plans judge outside the folder": (stored("plans_judge", {"model": "../judge"}), ["plans_judge must name a folder"]),
    "plans judge temperature": (stored("plans_judge", {"model": "plans_judge", "temperature": -1}),
                                ["plans_judge temperature must be a positive number"]),
    "plans judge missing": (lambda d: shutil.rmtree(d / "plans_judge"), ["plans judge's folder plans_judge/ is missing"]),
    "plans judge of unknown units": (lambda d: stored("units", "bytes")(d / "plans_judge"), ["unknown n-gram units 'bytes'"]),
}


def wait_failed(client: TestClient, timeout: float = 60.0) -> dict:
    """The /readyz body once the load has failed (it says `loading` until then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/readyz")
        assert response.status_code == 503, response.text
        if "still loading" not in response.json()["detail"]:
            return response.json()
        time.sleep(0.05)
    pytest.fail(f"the load neither failed nor succeeded within {timeout} s")


def assert_one_readable_line(detail: str, *fragments: str) -> None:
    assert detail and "\n" not in detail and "Traceback" not in detail and 'File "' not in detail, detail
    for fragment in fragments:
        assert fragment in detail, (fragment, detail)


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_model_folder_is_reported_not_served(tiny_model, tmp_path, case):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    breaks, fragments = BROKEN[case]
    breaks(folder)
    with TestClient(create_app(settings(), model_dir=folder), raise_server_exceptions=False) as c:
        ready = wait_failed(c)
        assert ready["ready"] is False
        assert_one_readable_line(ready["detail"], str(folder), *fragments)
        assert c.get("/healthz").status_code == 200
        for path, payload in (("/v1/classify", {"paragraphs": [OK]}), ("/v1/reports", {"text": OK})):
            refused = c.post(path, json=payload)
            assert refused.status_code == 503, refused.text
            assert_one_readable_line(refused.json()["detail"], ready["detail"])
        assert c.get("/v1/model").status_code == 503


# --- subprocesses: `renda serve` and `renda train` as a user runs them --------------------------


def environment(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_DIR", "MAKEFLAGS", "MAKELEVEL")}
    env.update(THREADS="1", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", **extra)
    return env


def renda(*args: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, env=environment(),
                                stdout=out, stderr=subprocess.STDOUT)


def get(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url: str, payload: dict, timeout: float = 60.0) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload, ensure_ascii=False).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def start_server(model_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = renda("serve", "--model", str(model_dir), "--port", str(port), log=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the service exited ({process.returncode}):\n{log.read_text(errors='replace')}"
        try:
            if get(base + "/healthz", timeout=1)[0] == 200:
                return process, base
        except OSError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"the service did not answer within 60 s:\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen, timeout: float = 20.0) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"the process did not exit within {timeout} s of SIGTERM")


def test_renda_serve_starts_without_a_model(tmp_path):
    log = tmp_path / "serve.log"
    process, base = start_server(tmp_path / "no-model-here", log)
    try:
        deadline = time.monotonic() + 30
        while (ready := get(base + "/readyz"))[1]["detail"] == "the model is still loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready[0] == 503 and ready[1]["ready"] is False
        assert_one_readable_line(ready[1]["detail"], "no-model-here", "renda_model.json")
        assert get(base + "/healthz") == (200, {"status": "ok"})
        status, body = post(base + "/v1/classify", {"paragraphs": [OK]})
        assert status == 503 and "renda_model.json" in body["detail"]
    finally:
        code = stop(process)
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert "holds no trained model" in output  # the warning at start-up
    assert "Traceback" not in output, output


def test_sigterm_lets_requests_in_flight_finish(tiny_model, tmp_path):
    log = tmp_path / "serve.log"
    process, base = start_server(tiny_model, log)
    port = int(base.rsplit(":", 1)[1])
    results: dict[int, tuple] = {}
    try:
        deadline = time.monotonic() + 60
        while get(base + "/readyz")[0] != 200:
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        # Each request about a second of work for the tiny model: 64 long paragraphs, ~25 windows each.
        long = "常委会听取审议县政府关于生态环境保护工作情况的报告，提出意见建议十二条。" * 15
        connections = []
        for i in range(4):  # each request sent in full before SIGTERM; the answers are read in threads
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            body = json.dumps({"paragraphs": [f"{long}{i}-{j}" for j in range(64)]}, ensure_ascii=False).encode()
            connection.request("POST", "/v1/classify", body=body, headers={"content-type": "application/json"})
            connections.append(connection)

        def answer(i: int) -> None:
            try:
                response = connections[i].getresponse()
                results[i] = (response.status, len(json.loads(response.read()).get("results", [])), time.monotonic())
            except Exception as error:  # a dropped connection fails the test below
                results[i] = (repr(error), 0, time.monotonic())

        threads = [threading.Thread(target=answer, args=(i,), daemon=True) for i in range(len(connections))]
        for thread in threads:
            thread.start()
        assert get(base + "/healthz")[0] == 200  # a round trip after them: the server has read all four
        signalled = time.monotonic()
        code = stop(process, timeout=60)
        for thread in threads:
            thread.join(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text(errors="replace")
    assert code == 0, output
    assert sorted(results) == [0, 1, 2, 3]
    assert all(status == 200 and count == 64 for status, count, _ in results.values()), (results, output)
    assert sum(done > signalled for _, _, done in results.values()) >= 2, "the requests were not in flight at SIGTERM"
    assert "Traceback" not in output, output


# --- a training run killed with SIGKILL ----------------------------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_config(path: Path, **values) -> Path:
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in {**TINY_OVERRIDES, **values}.items()), encoding="utf-8")
    return path


def test_train_killed_mid_epoch_leaves_the_published_model_alone(tiny_model, tiny_base, starter_dataset, tmp_path):
    published = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model, published)
    before = snapshot(published)
    train = ("train", "--data", str(starter_dataset), "--out", str(published), "--base-model", str(tiny_base), "--threads", "1")
    long_run = write_config(tmp_path / "long.toml", epochs=200, max_steps=100_000, patience=200, max_minutes=10)
    log = tmp_path / "killed.log"
    process = renda(*train, "--config", str(long_run), log=log)
    try:
        deadline = time.monotonic() + 120
        while "loss=" not in log.read_text(errors="replace"):  # the progress bar: optimiser steps under way
            assert process.poll() is None, f"training ended by itself ({process.returncode}):\n{log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"training never started:\n{log.read_text(errors='replace')}"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    assert snapshot(published) == before
    # A leftover of a publish killed half-way (what a kill during the save leaves), to be cleaned up.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    leftover = published.parent / f".tiny.staging-{dead}-x1y2z3"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half written")

    # The next run, as a user would start it (in this process: torch is loaded here already).
    assert main([*train, "--config", str(write_config(tmp_path / "short.toml"))]) == 0
    assert sorted(p.name for p in published.parent.iterdir()) == ["tiny"], "stale staging or retired folders were left"
    meta = json.loads((published / "renda_model.json").read_text(encoding="utf-8"))
    assert meta["fingerprint"], "the model there is not the one the second run published"  # the fixture has none
    assert snapshot(published) != before


def test_the_leftovers_of_a_killed_publish_are_cleaned_up(tmp_path):
    from model.publish import staged_directory

    final = tmp_path / "model"
    final.mkdir()
    (final / "weights").write_text("old", encoding="utf-8")
    script = ("import sys, time\nfrom model.publish import staged_directory\n"
              "with staged_directory(sys.argv[1], ('weights',)) as staging:\n"
              "    (staging / 'weights').write_text('half')\n    print('staged', flush=True)\n    time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(final)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "staged"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    process.stdout.close()
    [left] = [p.name for p in tmp_path.iterdir() if p.name.startswith(".model.staging-")]
    assert left.startswith(f".model.staging-{process.pid}-")
    assert (final / "weights").read_text() == "old"
    # A process still running keeps its staging folder.
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / f".model.staging-{alive.pid}-busy").mkdir()
        with staged_directory(final, ("weights",)) as staging:
            (staging / "weights").write_text("new", encoding="utf-8")
        assert (final / "weights").read_text() == "new"
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".model.staging-{alive.pid}-busy", "model"]
    finally:
        alive.kill()
        alive.wait()


def test_a_publish_killed_between_its_renames_gets_the_old_model_back(tmp_path):
    """Killed after setting the old model aside and before the new one took its name: the old one
    (`.NAME.retired-PID`) is put back by the next run, and the new one's staging is dropped."""
    from model.publish import clean_leftovers

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    retired, staging = tmp_path / f".model.retired-{dead}", tmp_path / f".model.staging-{dead}-abc"
    for folder, content in ((retired, "old"), (staging, "new")):
        folder.mkdir()
        (folder / "weights").write_text(content, encoding="utf-8")
    clean_leftovers(tmp_path / "model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (tmp_path / "model" / "weights").read_text() == "old"


# --- shutting the service down answers the jobs already queued ----------------------------------


def test_stop_answers_the_jobs_already_queued():
    gate, model = threading.Event(), Recording()

    class Held:  # answers the start-up probe at once, then holds the first batch until the gate opens
        labels, model_id, info = model.labels, model.model_id, model.info
        probed = False

        def predict(self, texts, *rest, **options):
            if self.probed:
                assert gate.wait(30)
            self.probed = True
            return model.predict(texts)

    service = ModelService(Held, batch_wait_ms=0, max_batch_paragraphs=1)
    service.start().join(10)
    assert service.ready.is_set(), service.error
    texts = [f"第{i}段人大工作" for i in range(5)]
    answers: dict[str, object] = {}

    def ask(text):
        try:
            answers[text] = service.classify([text])
        except Exception as error:
            answers[text] = error

    threads = [threading.Thread(target=ask, args=(t,), daemon=True) for t in texts]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while service.batcher.waiting() < len(texts):  # one in the model, the others queued behind it
        assert time.monotonic() < deadline, "the requests never queued"
        time.sleep(0.01)
    service.stop()  # what the app's lifespan shutdown does
    gate.set()
    for thread in threads:
        thread.join(10)
    assert set(answers) == set(texts)
    for text in texts:
        assert [p.label for p in answers[text]] == [p.label for p in model.predict([text])], answers[text]
    assert not service.ready.is_set()


def test_an_output_folder_this_step_did_not_write_is_never_replaced(tmp_path, capsys):
    """Publishing replaces `--out` whole: a folder of reports, a folder of other models, a file or a
    link given by mistake is refused before any work, and left as it was; an earlier output of the
    same step (its mark file), an empty folder or a new path is replaced as ever."""
    from apps.cli import main
    from model.publish import check_replaceable, staged_directory
    from renda.records import DataError

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "a.txt").write_text("一、立法工作\n制定条例三件。\n", encoding="utf-8")
    assert main(["data", "--corpus", str(STARTER), "--out", str(reports)]) == 2
    assert "is not an earlier output of this step" in capsys.readouterr().err
    assert sorted(p.name for p in reports.iterdir()) == ["a.txt"]
    models = tmp_path / "models"
    (models / "bert").mkdir(parents=True)
    (models / "bert" / "renda_model.json").write_text("{}", encoding="utf-8")
    with pytest.raises(DataError, match="no renda_model.json"):
        check_replaceable(models, ("renda_model.json",))
    check_replaceable(models / "bert", ("renda_model.json",))  # an earlier model: replaceable
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="is a file"):
        check_replaceable(a_file, ("summary.json",))
    (tmp_path / "link").symlink_to(models / "bert")
    with pytest.raises(DataError, match="symbolic link"):
        check_replaceable(tmp_path / "link", ("renda_model.json",))
    with pytest.raises(DataError):
        with staged_directory(reports, ("summary.json",)):
            pytest.fail("the work must not start")
    (tmp_path / "empty").mkdir()
    for fresh in (tmp_path / "empty", tmp_path / "new"):
        with staged_directory(fresh, ("summary.json",)) as staging:
            (staging / "summary.json").write_text("{}", encoding="utf-8")
        assert (fresh / "summary.json").is_file()
    assert a_file.read_text(encoding="utf-8") == "mine" and (models / "bert" / "renda_model.json").is_file()


def test_a_broken_model_folder_is_never_up_to_date(tmp_path, tiny_model):
    """`make train` passes --if-stale: a folder whose weights went missing or whose metadata broke
    since is retrained, not skipped as up to date."""
    from training.pipeline import is_current

    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    stamp = json.loads((folder / "renda_model.json").read_text(encoding="utf-8"))["fingerprint"]
    assert is_current(folder, "model", stamp)
    assert not is_current(folder, "model", "another recipe")
    (folder / "model.safetensors").unlink()
    assert not is_current(folder, "model", stamp)
    shutil.copy(tiny_model / "model.safetensors", folder / "model.safetensors")
    for broken in ('{"fingerprint": ', "[1]", ""):
        (folder / "renda_model.json").write_text(broken, encoding="utf-8")
        assert not is_current(folder, "model", stamp)


def test_an_export_that_fails_before_it_writes_leaves_the_old_export_standing(tmp_path, tiny_onnx_model, monkeypatch):
    """The parity record goes only when the ONNX files start to change: an export stopped while loading
    the model (or reading its paragraphs) leaves the folder serving the export it had."""
    import training.export
    from model.backends import PARITY_FILE

    folder = tmp_path / "model"
    shutil.copytree(tiny_onnx_model, folder)
    record = (folder / PARITY_FILE).read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("cannot load")

    monkeypatch.setattr(training.export.BertPredictor, "load", broken)
    with pytest.raises(RuntimeError, match="cannot load"):
        training.export.run_export(folder, [str(STARTER)], threads=1)
    assert (folder / PARITY_FILE).read_bytes() == record
