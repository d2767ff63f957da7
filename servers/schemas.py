"""Wire models of the env server, shared by the server (``servers/env_server.py``) and its client.

Every request and response body of the HTTP routes is a model here, so the OpenAPI document describes the
whole protocol. WebSocket messages carry the same bodies with an ``op`` (see :class:`WsRequest`).

Errors are ``{"error": {"code", "message", "hint"?}}`` with the HTTP status of :data:`ERROR_STATUS`
(docs/design.md "Serving"). The batched step is the one answer that is 200 with per-item results, each item a
result or an error object.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ERROR_STATUS",
    "BatchItemResult",
    "BatchStepItem",
    "BatchStepRequest",
    "BatchStepResponse",
    "CloseResponse",
    "CreateSessionRequest",
    "EnvList",
    "EnvSpec",
    "ErrorBody",
    "ErrorCode",
    "ErrorResponse",
    "Health",
    "ResetRequest",
    "ResetResult",
    "SessionCreated",
    "SpaceSpec",
    "StepRequest",
    "StepResult",
    "WsRequest",
    "error_body",
]

ErrorCode = Literal[
    "BAD_REQUEST",
    "UNAUTHORIZED",
    "SESSION_NOT_FOUND",
    "ENV_NOT_FOUND",
    "EPISODE_DONE",
    "TOO_LARGE",
    "CAPACITY",
    "ENV_CRASHED",
    "STEP_TIMEOUT",
]

# code -> HTTP status (BAD_REQUEST is 400 for malformed JSON, 422 for a well-formed body of the wrong shape)
ERROR_STATUS: Final[dict[str, int]] = {
    "BAD_REQUEST": 400,
    "UNAUTHORIZED": 401,
    "SESSION_NOT_FOUND": 404,
    "ENV_NOT_FOUND": 404,
    "EPISODE_DONE": 409,
    "TOO_LARGE": 413,
    "CAPACITY": 429,
    "ENV_CRASHED": 502,
    "STEP_TIMEOUT": 504,
}

_STRICT = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    model_config = _STRICT

    code: ErrorCode
    message: str
    hint: str | None = None


class ErrorResponse(BaseModel):
    model_config = _STRICT

    error: ErrorBody


def error_body(code: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """The JSON error object ``{"error": {"code", "message", "hint"?}}`` (``hint`` left out when None)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if hint:
        error["hint"] = hint
    return {"error": error}


class SpaceSpec(BaseModel):
    """A text space: strings of ``min_length`` to ``max_length`` characters."""

    model_config = _STRICT

    type: Literal["text"] = "text"
    min_length: int = 0
    max_length: int


class EnvSpec(BaseModel):
    model_config = _STRICT

    env_id: str
    observation_space: SpaceSpec
    action_space: SpaceSpec


class EnvList(BaseModel):
    model_config = _STRICT

    envs: list[EnvSpec]


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_by_name=True)

    env_id: str = Field(min_length=1, max_length=200, examples=["resrl/Echo-v0"])
    # named env_kwargs in Python (pydantic's mypy plugin reserves ``kwargs``), "kwargs" on the wire
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias="kwargs",
        serialization_alias="kwargs",
        description="keyword arguments of the env's constructor",
    )


class SessionCreated(BaseModel):
    model_config = _STRICT

    session_id: str
    env_id: str
    observation_space: SpaceSpec
    action_space: SpaceSpec


class ResetRequest(BaseModel):
    model_config = _STRICT

    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    options: dict[str, Any] | None = None


class ResetResult(BaseModel):
    model_config = _STRICT

    observation: str
    info: dict[str, Any]


class StepRequest(BaseModel):
    model_config = _STRICT

    action: str
    request_id: str | None = Field(
        default=None,
        max_length=128,
        description="client request id: a retried step with the same id returns the stored answer",
    )


class StepResult(BaseModel):
    model_config = _STRICT

    observation: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class BatchStepItem(BaseModel):
    model_config = _STRICT

    session_id: str = Field(max_length=128)
    action: str
    request_id: str | None = Field(default=None, max_length=128)


class BatchStepRequest(BaseModel):
    model_config = _STRICT

    steps: list[BatchStepItem]


class BatchItemResult(BaseModel):
    """One item of a batched step: ``result`` on success, ``error`` (with its code) otherwise."""

    model_config = _STRICT

    session_id: str
    result: StepResult | None = None
    error: ErrorBody | None = None


class BatchStepResponse(BaseModel):
    model_config = _STRICT

    results: list[BatchItemResult]


class CloseResponse(BaseModel):
    model_config = _STRICT

    session_id: str
    closed: bool


class Health(BaseModel):
    """Liveness; the counts only for a caller with a valid token (or on a server without tokens)."""

    model_config = _STRICT

    status: Literal["ok"]
    sessions: int | None = None
    workers: int | None = None
    isolation: Literal["process", "thread"] | None = None


class WsRequest(BaseModel):
    """One WebSocket message (JSON text). ``id`` is echoed in the answer.

    ``op="create"`` takes ``env_id``/``kwargs``; ``reset`` takes ``seed``/``options``; ``step`` takes ``action``
    and ``request_id``; ``close`` nothing; ``step_batch`` takes ``steps``. On ``/v1/sessions/{id}/ws`` the
    ``session_id`` defaults to that session. The answer is ``{"id", "result": ...}`` or ``{"id", "error": ...}``
    (the error object also carries its HTTP ``status``).
    """

    model_config = ConfigDict(extra="forbid", validate_by_name=True)

    op: Literal["create", "reset", "step", "close", "step_batch"]
    id: int | str | None = None
    session_id: str | None = None
    env_id: str | None = None
    env_kwargs: dict[str, Any] | None = Field(default=None, validation_alias="kwargs", serialization_alias="kwargs")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    options: dict[str, Any] | None = None
    action: str | None = None
    request_id: str | None = Field(default=None, max_length=128)
    steps: list[BatchStepItem] | None = None
