"""Servers: the FastAPI env server and tool server, their httpx clients and shared wire schemas.

May import ``envs`` and ``tools``; never torch, Ray or ``resrl_agent`` (env-server images stay small).
"""
