"""``resrl/Echo-v0``: say the asked word (tests, smoke runs, server benchmarks)."""

from envs.spec import EnvSpec

SPEC = EnvSpec(id="resrl/Echo-v0", entry_point="envs.echo.env:EchoEnv", example_kwargs={"max_steps": 2})
