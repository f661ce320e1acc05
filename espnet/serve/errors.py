"""Errors of the service as OpenAI's API writes them:
``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` with the HTTP status."""

from typing import Dict, Optional

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """A request the service answers with an error.

    Args:
        status: HTTP status (413, 415, 422, 503, ...).
        message: What is wrong, in one line.
        param: The request field at fault (``file``, ``response_format``), if any.
        code: A short machine-readable name (``file_too_large``, ``unsupported_media``, ...).
        headers: Extra response headers (``Retry-After``).
    """

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    @property
    def type(self) -> str:
        """OpenAI's error type: ``invalid_request_error`` for the client's errors (4xx),
        ``server_error`` for ours (5xx)."""
        return "server_error" if self.status >= 500 else "invalid_request_error"

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.param, self.code, self.headers)


def error_response(status: int, message: str, type_: str, param: Optional[str] = None, code: Optional[str] = None,
                   headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)
