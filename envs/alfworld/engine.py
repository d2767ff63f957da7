"""The real ALFWorld text engine, built the way ``AlfredTWEnv.init_env`` builds it, one game per ``load``.

``AlfredTWEnv.init_env`` registers a textworld gym env whose every sub-env is
``GenericEnvironment(infos) -> Limit -> AlfredDemangler -> AlfredInfos [-> AlfredExpert] -> Filter``.
:func:`make_engine` builds the same stack minus ``Limit`` (our env counts steps) and ``Filter`` (we read the
``GameState`` directly), and always with the handcoded expert and the facts, which alfworld adds only for
``training_method="dagger"`` on the train split. ``GenericEnvironment`` keeps its ``PddlEnv`` (and its private copy of
fast-downward's ``libdownward.so``) across ``load`` calls, so one engine plays any number of games.

The handcoded expert draws from Python's global ``random``; :class:`ExpertRandom` gives each episode its own seeded
stream so expert actions and walkthroughs are reproducible and never disturb the caller's ``random`` state.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

logger = logging.getLogger(__name__)

TASK_TYPES: dict[int, str] = {
    1: "pick_and_place_simple",
    2: "look_at_obj_in_light",
    3: "pick_clean_then_place_in_recep",
    4: "pick_heat_then_place_in_recep",
    5: "pick_cool_then_place_in_recep",
    6: "pick_two_obj_and_place",
}
TASK_TYPE_IDS: dict[str, int] = {name: number for number, name in TASK_TYPES.items()}


class ExpertRandom:
    """A private ``random`` stream swapped in around every engine call that may run the handcoded expert."""

    def __init__(self, seed: int | str = 0) -> None:
        self._state = random.Random(seed).getstate()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        outer = random.getstate()
        random.setstate(self._state)
        try:
            yield
        finally:
            self._state = random.getstate()
            random.setstate(outer)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the prints of alfworld/textworld internals (they print progress and warnings to stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


class _LruCache:
    """A small LRU map from a digest of text arguments to a value (translations and parsed grammars)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, parts: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=16).digest()
        if digest in self._items:
            self._items.move_to_end(digest)
            self.hits += 1
            return self._items[digest]
        self.misses += 1
        value = make()
        self._items[digest] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


# Sizes bound a worker's memory when it plays many distinct games (a translation is about 0.6 MB, two per game, and
# alfworld's grammar text differs between some games): 32 games' translations still cover a group's G resets of one
# game and a 30-game evaluation repeated within one process.
_TRANSLATIONS = _LruCache(64)  # (domain, problem, kwargs) -> fast_downward.pddl2sas result
_LOGICS = _LruCache(16)  # (domain, grammar) -> textworld GameLogic (the grammar parse)
_TEMPLATES = _LruCache(4096)  # (template text, rule name) -> parsed text-grammar symbols (copied on every use)
_QUERIES = _LruCache(4096)  # conjunctive-query text -> textworld Rule (read only)


def _copy_context(context: dict[str, Any]) -> dict[str, Any]:
    """textworld's ``copy_context`` without its deep copies: the two maps a derivation extends are new dicts.

    textworld deep-copies ``variables`` and ``mapping`` for every derived symbol (a third of a step's time), but
    derivation only ever adds keys to the copies (``query``'s ``update``) and reads their values, which are
    immutable logic placeholders/variables and entity records; copying the dicts keeps every derivation separate.
    """
    return {
        "state": context["state"],
        "facts": context["facts"],
        "variables": dict(context["variables"]),
        "mapping": dict(context["mapping"]),
        "entity_infos": context["entity_infos"],
    }


@contextlib.contextmanager
def memoized_translation() -> Iterator[None]:
    """Reuse the engine's pure translation and parsing steps across loads, resets and steps.

    ``PddlEnv.load`` parses the grammar (about 0.7 s) and builds a ``PddlState``; ``PddlEnv.reset`` builds another,
    and each ``PddlState`` runs fast-downward's PDDL-to-SAS translation twice (about 0.15 s each). Both are pure
    functions of their text inputs and their results are only read afterwards, so within this context they are
    looked up in small LRU caches. Every step then derives the text of each admissible command and observation
    from the game's text grammar: textworld re-parses each template string and each condition with tatsu (about
    60 % of a step) and deep-copies the derivation context per symbol (about 30 %). Within this context a parsed
    template is kept and deep-copied on use (the derivation mutates its symbols), a parsed condition is kept and
    shared (only read), and contexts are copied one level deep. The engine's state (``load_sas``, the facts,
    every step) is computed as before; tests/envs/test_alfworld.py checks that observations, admissible commands
    and expert plans are identical with and without this context.
    """
    import copy

    import fast_downward
    from textworld.envs.pddl import logic as pddl_logic
    from textworld.envs.pddl import textgen
    from textworld.logic import Rule

    original_translate, original_logic = fast_downward.pddl2sas, pddl_logic.GameLogic
    original_parse, original_copy_context = textgen._parse_and_convert, textgen.copy_context
    original_query = Rule.__dict__["parse_conjunctive_query"]

    def translate(domain: str, problem: str, **kwargs: Any) -> Any:
        key = (domain, problem, sorted(kwargs.items()))
        return _TRANSLATIONS.get_or_make(key, lambda: original_translate(domain, problem, **kwargs))

    def game_logic(domain: str, grammar: str) -> Any:
        return _LOGICS.get_or_make((domain, grammar), lambda: original_logic(domain=domain, grammar=grammar))

    def parse_template(*args: Any, **kwargs: Any) -> Any:
        parsed = _TEMPLATES.get_or_make((args, sorted(kwargs.items())), lambda: original_parse(*args, **kwargs))
        return copy.deepcopy(parsed)

    def parse_query(cls: type, expr: str) -> Any:
        return _QUERIES.get_or_make((expr,), lambda: original_query.__func__(cls, expr))

    fast_downward.pddl2sas, pddl_logic.GameLogic = translate, game_logic
    textgen._parse_and_convert, textgen.copy_context = parse_template, _copy_context
    Rule.parse_conjunctive_query = classmethod(parse_query)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        fast_downward.pddl2sas, pddl_logic.GameLogic = original_translate, original_logic
        textgen._parse_and_convert, textgen.copy_context = original_parse, original_copy_context
        Rule.parse_conjunctive_query = original_query  # type: ignore[method-assign]


def make_engine() -> Any:
    """A textworld environment stack with alfworld's wrappers; call ``load(game.tw-pddl)`` then ``reset()``."""
    with quiet():
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredExpert, AlfredInfos
        from textworld.envs.wrappers import GenericEnvironment

    class SafeAlfredExpert(AlfredExpert):  # type: ignore[misc]
        """alfworld's expert wrapper with two fixes: the expert sees placements, and a failure gives the fallback plan.

        ``AlfredExpert`` catches only the expert's timeout; after off-policy play the handcoded expert can also raise
        ``HandCodedAgentFailed`` (all subgoals done, goal not met). alfworld's own fallback plan is ``["look"]``.
        """

        def _gather_infos(self) -> None:
            command: str = self.prev_command  # type: ignore[has-type]
            # alfworld 0.4.2's grammar says "move X to Y" where the expert still tracks "put": without this its
            # inventory keeps the placed object, and pick_two games loop after the first object is placed.
            if command.startswith("move ") and " to " in command:
                self.prev_command = "put " + command[len("move ") :]
            try:
                super()._gather_infos()
            except Exception as error:
                logger.debug("handcoded expert gave up: %r", error)
                self.state["extra.expert_plan"] = ["look"]
            finally:
                self.prev_command = command

    request_infos = textworld.EnvInfos(
        won=True, admissible_commands=True, facts=True, extras=["gamefile", "expert_plan"]
    )
    env = GenericEnvironment(request_infos)
    for wrapper in (AlfredDemangler(shuffle=False), AlfredInfos, SafeAlfredExpert("handcoded")):
        env = wrapper(env)
    return env


def fact_strings(facts: list[Any]) -> list[str]:
    """Engine facts as ``"name arg1 arg2"`` strings with the player's names (``"inreceptacle egg 1 countertop 1"``)."""
    return [" ".join([fact.name, *(name.strip() for name in fact.names)]) for fact in facts]
