"""Discord's JSON error answers: the codes the REST API uses and the exception that carries one.

A route raises ``ApiError`` wherever it finds the request wrong; the guard turns it into the
response, so no route builds an error body by hand.
"""

from __future__ import annotations

from aiohttp import web

from simulator.payloads import Payload
from simulator.responses import json_response

UNKNOWN_APPLICATION = 10002
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_EMOJI = 10014
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
EMPTY_MESSAGE = 50006
INVALID_FORM_BODY = 50035
INVALID_JSON = 50109
ALREADY_ACKNOWLEDGED = 40060


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: int, errors: Payload | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors

    @classmethod
    def invalid_field(cls, field: str, message: str) -> ApiError:
        errors = {field: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}}
        return cls(400, "Invalid Form Body", INVALID_FORM_BODY, errors)

    def response(self) -> web.Response:
        body: Payload = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, self.status)
