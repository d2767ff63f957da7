"""The real ALFWorld text engine, built the way ``AlfredTWEnv.init_env`` builds it, one game per ``load``.

``AlfredTWEnv.init_env`` registers a textworld gym env whose every sub-env is
``GenericEnvironment(infos) -> Limit -> AlfredDemangler -> AlfredInfos [-> AlfredExpert] -> Filter``.
:func:`make_engine` builds the same stack minus ``Limit`` (our env counts steps) and ``Filter`` (we read the
``GameState`` directly), and always with the handcoded expert and the facts, which alfworld adds only for
``training_method="dagger"`` on the train split. ``GenericEnvironment`` keeps its ``PddlEnv`` (and its private copy of
fast-downward's ``libdownward.so``) across ``load`` calls, so one engine plays any number of games.

The handcoded expert draws from Python's global ``random``; :class:`ExpertRandom` gives each episode its own seeded
stream so expert actions and walkthroughs are reproducible and never disturb the caller's ``random`` state.

Loading a game runs fast-downward's PDDL-to-SAS translation twice (about 85 % of a reset of a game not seen before);
:func:`memoized_translation` runs it once (the second, optimized task is only searched for plans this stack never
asks for) and keeps translations in memory and on disk, shared by processes
(:class:`TranslationDiskCache`; ``RESRL_ALFWORLD_DISK_CACHE=0`` turns the disk part off).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import random
import sys
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tools.cache import cache_dir

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

    def clear(self) -> None:
        self._items.clear()


# Sizes bound a worker's memory when it plays many distinct games (a translation is about 0.6 MB, two per game, and
# alfworld's grammar text differs between some games): 32 games' translations still cover a group's G resets of one
# game and a 30-game evaluation repeated within one process.
_TRANSLATIONS = _LruCache(64)  # (domain, problem, kwargs) -> fast_downward.pddl2sas result
_LOGICS = _LruCache(16)  # (domain, grammar) -> textworld GameLogic (the grammar parse)
_TEMPLATES = _LruCache(4096)  # (template text, rule name) -> parsed text-grammar symbols (copied on every use)
_QUERIES = _LruCache(4096)  # conjunctive-query text -> textworld Rule (read only)


def clear_memory_caches() -> None:
    """Empty this process's in-memory caches (tests and benchmarks use it to play as a fresh process would)."""
    for lru in (_TRANSLATIONS, _LOGICS, _TEMPLATES, _QUERIES):
        lru.clear()


# --- translations on disk --------------------------------------------------------------------------------------------

DISK_CACHE_ENV = "RESRL_ALFWORLD_DISK_CACHE"  # "0" / "false" / "no" / "off": no translation cache on disk
_SAS_MAGIC = b"resrl-alfworld-sas/1\n"  # file format and key scheme; bump to orphan every old entry
DISK_STATS = {"hits": 0, "misses": 0, "corrupt": 0, "write_errors": 0}  # this process's counts (tests, benchmarks)
_UNWRITABLE: set[Path] = set()  # folders a write failed in (warned about once)
# The translator options pddl2sas sets itself from ``optimize`` (the others keep their defaults and go into the key).
_FLAG_OPTIONS = frozenset(
    {
        "filter_unimportant_vars",
        "filter_unreachable_facts",
        "use_partial_encoding",
        "skip_variable_reordering",
        "add_implied_preconditions",
        "invariant_generation_max_candidates",
    }
)


def disk_cache_enabled() -> bool:
    """False when ``$RESRL_ALFWORLD_DISK_CACHE`` says no (``0``, ``false``, ``no``, ``off``)."""
    return os.environ.get(DISK_CACHE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.cache
def _engine_versions() -> tuple[tuple[str, str], ...]:
    from importlib import metadata

    versions = [("python", f"{sys.version_info[0]}.{sys.version_info[1]}")]
    for package in ("alfworld", "textworld", "fast-downward-textworld"):
        try:
            versions.append((package, metadata.version(package)))
        except metadata.PackageNotFoundError:
            versions.append((package, "?"))
    return tuple(versions)


def default_translation_dir() -> Path:
    """``<cache dir>/translations/<versions>``: one folder per engine version, so an upgrade starts an empty one.

    The cache dir is ``tools.cache.cache_dir("alfworld")`` (``$RESRL_CACHE/alfworld`` or
    ``~/.cache/resrl-agent/alfworld``), read at every call, as the shipped games' folder is.
    """
    short = {"python": "py", "alfworld": "alfworld", "textworld": "tw", "fast-downward-textworld": "fd"}
    tag = "-".join(f"{short[name]}{version}" for name, version in _engine_versions())
    return cache_dir("alfworld", "translations", tag)


@functools.cache
def _translator() -> tuple[Any, Any, Any, tuple[tuple[str, str], ...]]:
    """fast-downward's parser modules, and its translator options other than those pddl2sas sets.

    Importing the translator parses ``sys.argv`` (its ``options`` module runs argparse at import); pddl2sas sets
    ``sys.argv`` for that and leaves it so, this restores it.
    """
    saved = sys.argv
    sys.argv = ["translate.py", "domain", "task"]
    try:
        from fast_downward.translate import normalize, options
        from fast_downward.translate.pddl_parser import lisp_parser, parsing_functions
    finally:
        sys.argv = saved
    fixed = tuple(
        sorted(
            (name, repr(value))
            for name, value in vars(options).items()
            if not name.startswith("_")
            and name not in _FLAG_OPTIONS
            and (value is None or isinstance(value, str | int | float | bool))
        )
    )
    return lisp_parser, parsing_functions, normalize, fixed


@functools.cache
def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, racing other threads)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("Umask:")).split()[1], 8)
    return 0o022


def _parse_task(domain: str, problem: str) -> Any:
    """The normalized PDDL task, as pddl2sas builds it before translating (the translation only reads it)."""
    lisp_parser, parsing_functions, normalize, _ = _translator()
    with contextlib.redirect_stdout(io.StringIO()):
        task = parsing_functions.parse_task(
            lisp_parser.parse_nested_list(domain.split("\n")), lisp_parser.parse_nested_list(problem.split("\n"))
        )
        normalize.normalize(task)
    return task


class TranslationDiskCache:
    """fast-downward's SAS text on disk, one file per translation, keyed by everything the translation reads.

    ``pddl2sas(domain, problem, optimize=...)`` returns ``(task, sas)``: the parsed and normalized PDDL task (parsing
    and normalizing cost 2-6 ms) and the SAS text the translator writes (the other 25-400 ms). Only the SAS text is
    stored, as zlib-compressed UTF-8 text (no pickle: a cache entry is data, never code); a hit parses the task
    again, which gives the same object graph (tests/envs/test_alfworld.py compares their pickles). The key is a
    blake2b digest of the file format, the Python/alfworld/textworld/fast-downward-textworld versions, the
    translator's fixed options, ``optimize`` and the domain and problem texts (``verbose`` only prints, so it is left
    out); the translation is deterministic (the same SAS text across processes, hash seeds and call orders).

    A file is ``magic + blake2b(payload) + payload``, written to a temp file in the same folder and moved into place
    with ``os.replace``: a reader sees a whole entry or none, and two processes writing the same entry at once each
    move in a complete identical file. A file that does not verify (truncated, corrupt, other format) is logged at
    debug level, recomputed and overwritten. A folder that cannot be written costs a warning (once) and the
    translations are computed as without the cache. Entries are never evicted: about 14 KB per game on average (one
    translation under :func:`memoized_translation`; about 9 MB for the 640 shipped games).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def key(self, domain: str, problem: str, kwargs: dict[str, Any]) -> str:
        extra = sorted((k, repr(v)) for k, v in kwargs.items() if k not in ("optimize", "verbose"))
        parts = (
            _SAS_MAGIC.decode(),
            repr(_engine_versions()),
            repr(_translator()[3]),
            repr(bool(kwargs.get("optimize"))),
            repr(extra),
            domain,
            problem,
        )
        digest = hashlib.blake2b(digest_size=20)
        for part in parts:
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.sas.z"

    def read(self, key: str) -> str | None:
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            logger.debug("cannot read ALFWorld translation cache entry %s: %r", path, error)
            return None
        head = len(_SAS_MAGIC)
        try:
            if not blob.startswith(_SAS_MAGIC):
                raise ValueError("not a translation cache file of this format")
            checksum, payload = blob[head : head + 16], blob[head + 16 :]
            if hashlib.blake2b(payload, digest_size=16).digest() != checksum:
                raise ValueError(f"checksum mismatch ({len(blob)} bytes: truncated or corrupt)")
            return zlib.decompress(payload).decode("utf-8")
        except (ValueError, zlib.error) as error:
            DISK_STATS["corrupt"] += 1
            logger.debug("ignoring corrupt ALFWorld translation cache entry %s (%s); recomputing it", path, error)
            return None

    def write(self, key: str, sas: str) -> None:
        payload = zlib.compress(sas.encode("utf-8"), 6)
        blob = _SAS_MAGIC + hashlib.blake2b(payload, digest_size=16).digest() + payload
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; an entry gets the mode any new file gets
                with os.fdopen(fd, "wb") as file:
                    file.write(blob)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as error:
            DISK_STATS["write_errors"] += 1
            if self.directory not in _UNWRITABLE:  # warn once per folder
                _UNWRITABLE.add(self.directory)
                logger.warning("cannot write the ALFWorld translation cache under %s (%r); not caching", path, error)

    def translate(self, translate: Callable[..., Any], domain: str, problem: str, **kwargs: Any) -> Any:
        """``translate(domain, problem, **kwargs)`` (fast_downward.pddl2sas) through this cache."""
        task, sas, _ = self.fill(translate, domain, problem, **kwargs)
        return (task if task is not None else _parse_task(domain, problem)), sas

    def fill(
        self, translate: Callable[..., Any], domain: str, problem: str, **kwargs: Any
    ) -> tuple[Any | None, str, bool]:
        """The SAS text from this cache, or from ``translate`` (then written here): ``(task, sas, translated)``,
        where ``task`` is the translator's parsed task when it ran and None on a hit (not parsed again)."""
        key = self.key(domain, problem, kwargs)
        sas = self.read(key)
        if sas is not None:
            DISK_STATS["hits"] += 1
            return None, sas, False
        DISK_STATS["misses"] += 1
        task, sas = translate(domain, problem, **kwargs)
        self.write(key, sas)
        return task, sas, True


def _warm_one(game_file: str, directory: str) -> bool:
    """Translate one game into the disk cache unless it is there already; True when it was computed here."""
    import json

    import fast_downward

    game = json.loads(Path(game_file).read_text())
    with quiet():  # the plain task, asked for as textworld's PddlState asks (memoized_translation's key)
        _, _, translated = TranslationDiskCache(Path(directory)).fill(
            fast_downward.pddl2sas, game["pddl_domain"], game["pddl_problem"], verbose=False
        )
    return translated


def warm_translation_cache(
    game_files: list[Path],
    *,
    workers: int = 1,
    disk_dir: Path | None = None,
    on_game: Callable[[bool], None] | None = None,
) -> dict[str, int]:
    """Translate ``game_files`` into the on-disk cache ahead of play, in ``workers`` processes.

    The entries are those :func:`memoized_translation` reads (one per game: the plain task), so afterwards every
    process resets these games without translating: fill a shared cache folder once before starting many rollout
    workers, or before a timed run. Games already cached are skipped (read and checksummed, not recomputed).
    ``on_game(computed)`` is called once per game as it finishes, in completion order (a progress bar).
    Returns ``{"games", "computed", "cached"}`` counts.
    """
    directory = str(disk_dir or default_translation_dir())
    files = [str(f) for f in game_files]
    counts = {"games": len(files), "computed": 0, "cached": 0}

    def done(computed: bool) -> None:
        counts["computed" if computed else "cached"] += 1
        if on_game is not None:
            on_game(computed)

    if workers <= 1 or len(files) <= 1:
        for file in files:
            done(_warm_one(file, directory))
        return counts
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch or threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, len(files)), mp_context=context) as pool:
        futures = [pool.submit(_warm_one, file, directory) for file in files]
        for future in concurrent.futures.as_completed(futures):
            done(future.result())
    return counts


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
def memoized_translation(
    disk_dir: Path | None = None, *, disk: bool = True, optimized_replan: bool = False
) -> Iterator[None]:
    """Reuse the engine's pure translation and parsing steps across loads, resets and steps.

    ``PddlEnv.load`` parses the grammar (about 0.7 s) and builds a ``PddlState``; ``PddlEnv.reset`` builds another,
    and each ``PddlState`` runs fast-downward's PDDL-to-SAS translation twice (about 0.15 s each; once in this
    context, see below). Both are pure functions of their text inputs and their results are only read afterwards, so
    within this context they are looked up in small LRU caches. Every step then derives the text of each admissible
    command and observation from the game's text grammar: textworld re-parses each template string and each
    condition with tatsu (about 60 % of a step) and deep-copies the derivation context per symbol (about 30 %).
    Within this context a parsed template is kept and deep-copied on use (the derivation mutates its symbols), a
    parsed condition is kept and shared (only read), and contexts are copied one level deep. The engine's state
    (``load_sas``, the facts, every step) is computed as before; tests/envs/test_alfworld.py checks that
    observations, admissible commands and expert plans are identical with and without this context.

    A translation missing from memory is looked up on disk (:class:`TranslationDiskCache`, in ``disk_dir`` or by
    default in :func:`default_translation_dir`) and written there when computed, so a process resets a game that
    any process has loaded before in about 35 ms instead of about 180 ms (medians of 40 games, fresh processes).
    ``disk=False`` or ``RESRL_ALFWORLD_DISK_CACHE=0`` keeps translations in memory only.

    Of a ``PddlState``'s two translations, the second (``optimize=True``: unimportant variables and unreachable facts
    pruned, for a faster search) is only loaded as the planner's replanning task, which textworld searches for
    ``policy_commands`` and the ``walkthrough`` extra and for nothing else; :func:`make_engine` requests neither
    (its expert is alfworld's handcoded one). Unless ``optimized_replan`` is set, the plain translation, the whole
    task that the engine plays, stands in for it: a plan for it is a plan for the game, and a game never seen
    before resets with one translation instead of two (about half the cost of a cold reset).
    """
    import copy

    import fast_downward
    from textworld.envs.pddl import logic as pddl_logic
    from textworld.envs.pddl import textgen
    from textworld.logic import Rule

    original_translate, original_logic = fast_downward.pddl2sas, pddl_logic.GameLogic
    original_parse, original_copy_context = textgen._parse_and_convert, textgen.copy_context
    original_query = Rule.__dict__["parse_conjunctive_query"]

    def make_translation(domain: str, problem: str, kwargs: dict[str, Any]) -> Any:
        directory = (disk_dir or default_translation_dir()) if disk and disk_cache_enabled() else None
        if directory is None:
            return original_translate(domain, problem, **kwargs)
        return TranslationDiskCache(directory).translate(original_translate, domain, problem, **kwargs)

    def translate(domain: str, problem: str, **kwargs: Any) -> Any:
        if kwargs.get("optimize") and not optimized_replan:
            kwargs = {name: value for name, value in kwargs.items() if name != "optimize"}
        key = (domain, problem, sorted(kwargs.items()))
        return _TRANSLATIONS.get_or_make(key, lambda: make_translation(domain, problem, kwargs))

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
