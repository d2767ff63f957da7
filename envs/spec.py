"""What an env says about itself: one :class:`EnvSpec` per env, and the registry that collects them.

Every built-in env exports ``SPEC`` from ``envs/<name>/spec.py`` (found by scanning the ``envs`` package, so no list
of env ids is kept anywhere else); an env in a user's own package is found through the Python entry point group
``resrl_agent.envs`` (``my_env = "my_package.spec:SPEC"`` under ``[project.entry-points."resrl_agent.envs"]`` in its
``pyproject.toml``), with no edit to this repository. ``spec.py`` modules import only the standard library and
``envs.spec``: the registry is read when ``envs`` is imported, before any env's dependencies are.

The registry, the eval report (its per-category breakdown and the env's own metrics), the CLI (an env's own command
group) and the tests that cover every env loop over the specs.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from envs.base import EnvError

__all__ = ["ENTRY_POINT_GROUP", "EnvSpec", "EpisodeMetrics", "EpisodeOutcome", "discover_specs"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "resrl_agent.envs"


@dataclass(frozen=True)
class EpisodeOutcome:
    """What an env's episode metrics see of one played episode: its task, whether it was won, its step infos."""

    task_id: str
    won: bool
    infos: Sequence[Mapping[str, Any]]

    def last(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` in the latest info that has it (``default`` if none has)."""
        for info in reversed(self.infos):
            if key in info:
                return info[key]
        return default


# (the episodes of an evaluation, its per-category breakdown {category: {"success": ...}}, samples per task) -> metrics
EpisodeMetrics = Callable[[Sequence[EpisodeOutcome], Mapping[str, Mapping[str, float]], int], dict[str, float]]


@dataclass(frozen=True)
class EnvSpec:
    """One env, described once.

    Attributes:
        id: the gymnasium id, ``namespace/Name-vN``.
        entry_point: ``"package.module:Class"`` of the env, imported when the env is first made.
        package: the package that holds ``actions.py`` (``parse_action``) and ``prompts.py`` (``PROMPTS``);
            default: the entry point's package (``envs.counter`` for ``envs.counter.env:CounterEnv``).
        category_key: the info key naming an episode's category (task type, benchmark ...): the eval report's
            per-category breakdown.
        category_of_task: where the infos name no category: one from the task id (None: no category).
        episode_metrics: the env's own eval metrics (see :data:`EpisodeMetrics`), e.g. ALFWorld's goal-condition
            success; keys are prefixed with the env's short name (``alfworld/...``).
        cli: ``"package.module:app"``, a Typer app mounted as ``resrl-agent <cli_name>``; ``cli_help`` its help.
        example_kwargs: constructor kwargs for a short, cheap episode (the tests that cover every env use them).
    """

    id: str
    entry_point: str
    package: str = ""
    category_key: str | None = None
    category_of_task: Callable[[str], str | None] | None = None
    episode_metrics: EpisodeMetrics | None = None
    cli: str | None = None
    cli_name: str | None = None
    cli_help: str = ""
    example_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        module, sep, attr = self.entry_point.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"EnvSpec {self.id!r}: entry_point {self.entry_point!r} is not 'package.module:Class'")
        if "/" not in self.id:
            raise ValueError(f"EnvSpec {self.id!r}: the id needs a namespace, e.g. 'mine/Counter-v0'")
        if not self.package:
            object.__setattr__(self, "package", module.rpartition(".")[0] or module)
        if self.cli is not None and not self.cli_name:
            raise ValueError(f"EnvSpec {self.id!r}: a cli needs a cli_name (the command: resrl-agent <cli_name>)")


def _builtin_specs() -> list[EnvSpec]:
    """``SPEC`` of every ``envs/<name>/spec.py``, in name order."""
    found = []
    for module in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if module.ispkg and importlib.util.find_spec(f"envs.{module.name}.spec") is not None:
            found.append(_spec_of(importlib.import_module(f"envs.{module.name}.spec").SPEC, f"envs.{module.name}.spec"))
    return found


def _spec_of(value: Any, where: str) -> EnvSpec:
    if not isinstance(value, EnvSpec):
        raise TypeError(f"{where} is a {type(value).__name__}, not an envs.spec.EnvSpec")
    return value


def _plugin_specs() -> list[EnvSpec]:
    """The specs behind the ``resrl_agent.envs`` entry points; one that fails to load is skipped with a warning
    that names it (a broken plugin must not break every other env)."""
    found = []
    for point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        try:
            found.append(_spec_of(point.load(), f"entry point {point.name} = {point.value}"))
        except Exception as err:  # any import error of a third-party package
            logger.warning(
                "env plugin %r (%s, group %s) did not load and is skipped: %s: %s",
                point.name,
                point.value,
                ENTRY_POINT_GROUP,
                type(err).__name__,
                err,
            )
    return found


def discover_specs() -> dict[str, EnvSpec]:
    """Every env spec: the built-in ones, then the plugins'. Two specs with one id are an error that names both."""
    specs: dict[str, EnvSpec] = {}
    for spec in [*_builtin_specs(), *_plugin_specs()]:
        other = specs.get(spec.id)
        if other is not None and other != spec:
            raise EnvError(
                f"env id {spec.id!r} is described twice: by {other.entry_point} and by {spec.entry_point}",
                hint="rename one: your own namespace (mine/Name-v0) or another version suffix",
            )
        specs[spec.id] = spec
    return specs
