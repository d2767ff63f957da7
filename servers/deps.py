"""FastAPI dependencies of the env server: the session manager (the env pool) and the settings of the app."""

from __future__ import annotations

from fastapi import Request

from servers.env_sessions import EnvServerSettings, SessionManager

__all__ = ["get_manager", "get_settings"]


def get_manager(request: Request) -> SessionManager:
    """The app's :class:`SessionManager` (started by the lifespan)."""
    manager: SessionManager = request.app.state.manager
    return manager


def get_settings(request: Request) -> EnvServerSettings:
    settings: EnvServerSettings = request.app.state.settings
    return settings
