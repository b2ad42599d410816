"""Error answers: one shape (`schemas.ErrorResponse`, OpenAI's) for every 4xx and 5xx.

Routes and the service raise `ApiError`; FastAPI's own errors (validation, unknown routes,
authentication) and anything unexpected are turned into the same body here, so no request can
take the server down or get an answer of another shape.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from longrm.serve.schemas import ErrorBody, ErrorResponse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    502: "upstream_error",
    504: "timeout_error",
}

#: the error answers every model route can give, for the OpenAPI schema
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": kind}
    for status, kind in (
        (400, "a body that is not UTF-8 JSON, or a request the served model cannot answer"),
        (401, "missing or wrong API key (--api-key)"),
        (413, "body or tokens over --max-body-bytes / --max-request-tokens"),
        (422, "invalid request: `param` names the field"),
        (429, "the queue stayed full for --queue-wait seconds; retry after Retry-After"),
        (500, "the model failed on this request"),
        (504, "no answer within --request-timeout"),
    )
}


class ApiError(Exception):
    """An error answer: status, message, and the field at fault when there is one."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """Return the JSON body of an error answer."""
    kind = ERROR_TYPES.get(status, "server_error")
    error = ErrorBody(message=message, type=kind, param=param, code=status)
    return ErrorResponse(error=error).model_dump()


def error_response(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Return an error answer."""
    return JSONResponse(error_body(status, message, param), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` with an `ErrorResponse` body."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        headers = {"Retry-After": "1"} if err.status == 429 else None
        return error_response(err.status, err.message, err.param, headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        headers = dict(err.headers) if err.headers else None
        return error_response(err.status_code, str(err.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        param = None
        for e in err.errors():
            loc = [str(p) for p in e.get("loc", ())]
            if loc and loc[0] in ("body", "query", "path", "header"):  # where, not which field
                loc = loc[1:]
            field = ".".join(loc) or "body"
            param = param or field
            problems.append(f"{field}: {e.get('msg', 'invalid')}")
        return error_response(422, "; ".join(problems) or "invalid request", param)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, err: Exception) -> JSONResponse:
        return error_response(500, f"{type(err).__name__}: {err}")
