"""House rules no single module's tests see: no import circle anywhere, one cache-dir rule for every part."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

from envs.alfworld import games
from resrl_agent.inference import make_model
from tools.cache import cache_dir


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_on_a_known_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(_cycles(graph)) == [["a", "b", "c"], ["d", "e"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_in_the_house() -> None:
    """Every import counts, also those inside functions and under TYPE_CHECKING (grimp sees them all)."""
    built = grimp.build_graph("resrl_agent", "envs", "tools", "servers")
    graph = {m: set(built.find_modules_directly_imported_by(m)) for m in built.modules}
    assert _cycles(graph) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, Path.home() / ".cache" / "resrl-agent"), ("", Path.home() / ".cache" / "resrl-agent"),
     ("~/c", Path.home() / "c"), ("/data/cache", Path("/data/cache"))],
)  # fmt: skip
def test_one_cache_dir_rule(value: str | None, expected: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("RESRL_CACHE", raising=False)
    else:
        monkeypatch.setenv("RESRL_CACHE", value)
    assert cache_dir() == make_model.cache_dir() == expected
    assert games.cache_dir() == cache_dir("alfworld") == expected / "alfworld"
