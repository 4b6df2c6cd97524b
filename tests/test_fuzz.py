"""Property-based fuzzing of the HTTP service from its own OpenAPI schema (schemathesis + hypothesis, bounded).

schemathesis' own `from_fixture(...).parametrize()` does not run under pytest 9 (it sets
`node._nodeid`, which pytest 9 dropped), and the app needs the session-scoped tiny model, so the
cases come from `operation.as_strategy()` under a plain `@given` inside ordinary tests.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance, negative_data_rejection, response_headers_conformance, response_schema_conformance,
    status_code_conformance,
)

from renda.settings import Settings
from serving.main import create_app

MAX_EXAMPLES = 30
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                database=None)
OPERATIONS = [("POST", "/v1/classify"), ("POST", "/v1/reports"), ("POST", "/v1/corrections"), ("POST", "/v1/explain"),
              ("POST", "/v1/retrain"), ("GET", "/v1/retrain"), ("GET", "/v1/labels"), ("GET", "/v1/model"), ("GET", "/healthz"),
              ("GET", "/readyz")]
TOKEN = "fuzz-admin-token"


def call(case):
    """Write actions with the admin token, except a retrain: fuzzing must not start trainings (401)."""
    return case.call(headers={} if case.path == "/v1/retrain" else {"authorization": f"Bearer {TOKEN}"})
# What the schema can say about a response. (`positive_data_acceptance` is left out on purpose: the
# schema cannot express "contains Chinese" or the character limits, so schema-valid data may get a 4xx.)
CONFORMANCE = [status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def module_schema(tiny_model, tmp_path_factory):
    app = create_app(Settings(max_paragraphs=16, max_paragraph_chars=400, max_report_chars=4_000, max_body_bytes=32_000,
                              batch_wait_ms=1, threads=1, corrections_dir=tmp_path_factory.mktemp("fuzzed-corrections"),
                              admin_token=TOKEN),
                     model_dir=tiny_model)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def api_schema(module_schema):
    """The schema, with the app's model loaded. schemathesis ends the app's lifespan after every test
    and starts it again on the next request, so each test waits for the reload."""
    app = module_schema.app
    with asgi.get_client(app) as client:  # (re)starts the lifespan
        deadline = time.monotonic() + 60
        while (ready := client.get("/readyz")).status_code != 200:
            assert ready.status_code == 503 and time.monotonic() < deadline, ready.text
            time.sleep(0.05)
    return module_schema


def assert_no_server_error(case, response) -> None:
    assert response.status_code < 500, f"{case.method} {case.path} {case.body!r:.300} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:  # every error is a JSON body that says what was wrong
        assert response.json()["detail"], response.text


def test_the_schema_has_every_operation(api_schema):
    found = sorted((op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations())
    assert found == sorted(OPERATIONS)


@pytest.mark.parametrize("method, path", OPERATIONS)
def test_valid_requests(api_schema, method, path):
    """Schema-valid requests: never a 5xx, and every response is one the schema documents."""
    operation = api_schema[path][method]

    @FUZZ
    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    def run(case):
        response = call(case)
        assert_no_server_error(case, response)
        case.validate_response(response, checks=CONFORMANCE)

    run()


@pytest.mark.parametrize("path", ["/v1/classify", "/v1/reports", "/v1/corrections", "/v1/explain"])
def test_invalid_requests(api_schema, path):
    """Schema-breaking bodies (wrong types, missing and extra fields, out-of-range top_k): a 4xx, never a 5xx."""
    operation = api_schema[path]["POST"]

    @FUZZ
    @given(case=operation.as_strategy(GenerationMode.NEGATIVE))
    def run(case):
        response = call(case)
        assert_no_server_error(case, response)
        # A body over the byte limit is refused (413) before it is read: a rejection, which
        # negative_data_rejection does not count among its expected codes.
        rejected = [] if response.status_code == 413 else [negative_data_rejection]
        case.validate_response(response, checks=[*rejected, *CONFORMANCE])

    run()


# Schema-valid text is mostly not Chinese, so the checks above seldom reach the model. These draw
# text that passes validation (Chinese, punctuation, digits, spaces, newlines, heading markers) and
# check the answer's shape whatever the text.
_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5)
_OTHER = st.sampled_from(list("，。；：、！？（）()《》“”—0123456789abcXYZ \u3000\t一二三四五六七八九十"))
_CHINESE = st.lists(st.one_of(_CJK, _CJK, _OTHER), min_size=1, max_size=120).map("".join).filter(
    lambda text: any("\u4e00" <= ch <= "\u9fa5" for ch in text))
_LINE = st.tuples(st.sampled_from(["", "", "一、", "（二）", "(三)", "1.", "——", "　　", "来源："]), _CHINESE).map("".join)


@FUZZ
@given(paragraphs=st.lists(_CHINESE, min_size=1, max_size=16), top_k=st.integers(1, 7))
def test_any_chinese_paragraphs_are_labelled(api_schema, paragraphs, top_k):
    with asgi.get_client(api_schema.app) as client:
        response = client.post("/v1/classify", json={"paragraphs": paragraphs, "top_k": top_k})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(paragraphs)
    for result in results:
        assert len(result["top"]) == top_k and result["top"][0][0] == result["label"]
        assert len(result["scores"]) == 7 and abs(sum(result["scores"].values()) - 1) < 1e-4


@FUZZ
@given(lines=st.lists(_LINE, min_size=1, max_size=25), blank=st.sampled_from(["\n", "\n\n", "\r\n", "\n \n"]))
def test_any_chinese_report_is_labelled(api_schema, lines, blank):
    with asgi.get_client(api_schema.app) as client:
        response = client.post("/v1/reports", json={"text": blank.join(lines)})
    assert response.status_code == 200, response.text
    body = response.json()
    paragraphs, sections = body["paragraphs"], body["sections"]
    assert 1 <= len(paragraphs) <= len(lines)
    assert [p["index"] for p in paragraphs] == list(range(len(paragraphs)))
    assert sum(body["counts"].values()) == len(paragraphs)
    assert sections[0]["first"] == 0 and sections[-1]["last"] == len(paragraphs) - 1
    assert all(b["first"] == a["last"] + 1 for a, b in zip(sections, sections[1:]))
