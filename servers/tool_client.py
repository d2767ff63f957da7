"""httpx client of the HTTP tool server (servers/tool_server.py)."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["ToolClient", "ToolServerError"]


class ToolServerError(RuntimeError):
    """An error answer of the tool server: HTTP status, code (e.g. SESSION_NOT_FOUND), message, hint."""

    def __init__(self, status: int, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" ({hint})" if hint else ""))
        self.status, self.code, self.message, self.hint = status, code, message, hint


class ToolClient:
    """Create a session with its own backend state, list its tools, call them, read the state."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8100",
        *,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport)
        self.session_id: str | None = None
        self.tools: list[dict[str, Any]] = []

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "HTTP_ERROR", "message": response.text[:200]}
            raise ToolServerError(
                response.status_code, error.get("code", "HTTP_ERROR"), error.get("message", ""), error.get("hint")
            )
        return response.json()

    def list_tools(self, classes: list[str] | None = None) -> list[dict[str, Any]]:
        tools: list[dict[str, Any]] = self._request("GET", "/v1/tools", params={"classes": ",".join(classes or [])})[
            "tools"
        ]
        return tools

    def create_session(
        self, classes: list[str], initial_config: dict[str, Any] | None = None, *, long_context: bool = False
    ) -> str:
        body = {"classes": classes, "initial_config": initial_config or {}, "long_context": long_context}
        answer = self._request("POST", "/v1/sessions", json=body)
        self.session_id, self.tools = answer["session_id"], answer["tools"]
        return str(answer["session_id"])

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"name", "content", "error"}``; ``error`` is set when the tool failed (the model's observation)."""
        result: dict[str, Any] = self._request(
            "POST", f"/v1/sessions/{self._sid()}/call", json={"name": name, "arguments": arguments or {}}
        )
        return result

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self._request("GET", f"/v1/sessions/{self._sid()}/state")["state"]
        return state

    def close_session(self) -> None:
        if self.session_id is not None:
            self._request("DELETE", f"/v1/sessions/{self.session_id}")
            self.session_id = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ToolClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sid(self) -> str:
        if self.session_id is None:
            raise ToolServerError(400, "BAD_REQUEST", "no session", "call create_session() first")
        return self.session_id
