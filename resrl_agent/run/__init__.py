"""The run layer: what every job (``rollout``, ``eval``, ``train``, benchmarks) builds from a :class:`RunConfig`.

- :mod:`~resrl_agent.run.tasks`: which tasks a job plays (training groups per iteration, the held-out set);
- :mod:`~resrl_agent.run.engines`: the configured inference engine (training or playing a fixed policy);
- :mod:`~resrl_agent.run.settings`: the rollout loop's settings (training or held-out play, local or remote envs).

It sits above ``rollout``, ``inference`` and ``eval`` and below ``jobs`` (the CLI's rollout and eval jobs) and
``trainer``; it imports neither (import-linter checks it).
"""
