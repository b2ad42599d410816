"""The fuzzed contract: schemathesis over every endpoint of a real `longrm serve` process.

The cases come from the OpenAPI schema the live server publishes (FastAPI derives it from the
pydantic bodies), both schema-valid (positive) and schema-invalid (negative) ones; no request may
get a 5xx, every answer must match its declared schema, and the server must stay up. The model is
a tiny random causal LM (the serve tests' tiny model, with a 256-token window) served as a
likelihood RM: it scores, compares, ranks and generates, and a 256-token window keeps every
generation short, whatever `max_tokens` the fuzzer asks for.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import _tiny
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_serve import ServeProcess, _error, _post

from longrm.serve.app import endpoints

#: endpoints left out of the fuzzing, with the reason (none: every route is fuzzed)
EXCLUDED: dict[str, str] = {}
#: routes that take no parameters, body or credentials: no invalid request exists for them, so
#: they get schema-valid cases only (the first test checks that the schema agrees)
NO_INPUT = ("/health", "/metrics")
#: generated cases per operation and generation mode: bounded, so the run is bounded on a CPU
MAX_EXAMPLES = 20
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def fuzz_server(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A likelihood RM on a tiny causal LM with small limits; no key, so every route is reached
    (the key check is test_serve's).
    """
    model = _tiny(tokenizer, tmp_path_factory.mktemp("tiny-fuzz"), scalar=False, window=256)
    log = tmp_path_factory.mktemp("fuzz-server") / "serve.log"
    server = ServeProcess(
        log, "--model", model, "--kind", "likelihood", "--name", "tiny-fuzz",
        "--max-body-bytes", "20000", "--max-request-tokens", "1024", "--max-new-tokens", "8",
    )  # fmt: skip
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()


@pytest.fixture(scope="module")
def schema(fuzz_server: ServeProcess) -> Any:
    """The OpenAPI schema as the live server publishes it."""
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


def _operations(schema: Any) -> dict[str, Any]:
    operations = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations[operation.path] = operation
    return operations


def test_every_endpoint_is_in_the_schema(schema: Any) -> None:
    """The fuzzing below covers every route the app serves: a new route cannot slip past it."""
    served = set(endpoints())
    operations = _operations(schema)
    assert set(operations) == served
    assert set(EXCLUDED) <= served
    inputless = {
        path
        for path, op in operations.items()
        if not list(op.iter_parameters()) and not op.body and not op.definition.raw.get("security")
    }
    assert inputless == set(NO_INPUT)


FUZZED = [
    pytest.param(path, mode, id=f"{path}-{mode}")
    for path in endpoints()
    if path not in EXCLUDED
    for mode in MODES
    if mode.is_positive or path not in NO_INPUT
]


@pytest.mark.parametrize(("path", "mode"), FUZZED)
def test_fuzzed_requests_get_no_server_error(
    schema: Any, fuzz_server: ServeProcess, path: str, mode: GenerationMode
) -> None:
    """Schema-valid and invalid requests get a documented answer, never a 5xx; the server
    stays healthy afterwards.
    """
    operation = _operations(schema)[path]
    sent: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any) -> None:
        response = case.call_and_validate(checks=CHECKS, timeout=60)
        sent.append(response.status_code)

    fuzz()
    assert sent, f"no case generated for {path} ({mode})"
    health = httpx.get(f"{fuzz_server.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert fuzz_server.process.poll() is None
    print(
        f"{operation.method.upper()} {path} {mode}: {len(sent)} cases, statuses {sorted(set(sent))}"
    )


# ------------------------------------------------------------------------------------------------
# what the fuzzer found, as plain regression tests


def test_an_empty_classify_input_is_a_422(fuzz_server: ServeProcess) -> None:
    """`input: []` reached the tokenizer, which fails on an empty batch (a 500)."""
    error = _error(_post(fuzz_server.url, "/classify", {"input": []}), 422)
    assert error["param"].startswith("input") and "at least 1 item" in error["message"]


def test_a_body_that_is_not_utf8_is_a_documented_400(
    fuzz_server: ServeProcess, schema: Any
) -> None:
    """FastAPI answers an undecodable body with a 400, which the schema did not list."""
    bad = httpx.post(
        f"{fuzz_server.url}/get_reward",
        content=b'{"query": ["\xff"]}',
        headers={"content-type": "application/json"},
    )
    _error(bad, 400)
    assert "400" in _operations(schema)["/get_reward"].definition.raw["responses"]


def test_metrics_are_documented_as_text(schema: Any) -> None:
    """Prometheus exposition is text: the schema said JSON."""
    content = _operations(schema)["/metrics"].definition.raw["responses"]["200"]["content"]
    assert list(content) == ["text/plain"]
