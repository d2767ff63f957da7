"""``resrl-agent webshop``: the play loop, catalogue summary, generation and policy scoring."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from envs.webshop.catalogue import read_products
from envs.webshop.cli import app

runner = CliRunner()


def test_play_search_hint_and_buy() -> None:
    replies = ["1", "counter height stools", "hint", "click[b0xseja6c0]", "click[black]", "click[nothing]", "6"]
    result = runner.invoke(app, ["play", "--task-id", "webshop-0"], input="\n".join(replies) + "\n")
    assert result.exit_code == 0, result.output
    assert "search[<your query>]" in result.output and "Page 1 (Total results: 50)" in result.output
    assert "The expert would do: click[b0xseja6c0]" in result.output
    assert "'click[nothing]' is not valid on this page" in result.output
    assert "Score 1.000. Success!" in result.output  # action 6 on the item page is click[buy now]


def test_play_quit() -> None:
    result = runner.invoke(app, ["play", "--split", "test", "--seed", "1", "--mode", "text_rich"], input="quit\n")
    assert result.exit_code == 0 and "[button] Search [button_]" in result.output and "Bye." in result.output


def test_catalogue_generate_and_evaluate(tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalogue"])
    assert result.exit_code == 0 and "2400 products, 9907 goals" in result.output
    out = tmp_path / "small.json.gz"
    result = runner.invoke(app, ["generate", "--out", str(out), "--seed", "3", "--products-per-type", "2"])
    assert result.exit_code == 0 and len(read_products(out)) == 60
    result = runner.invoke(app, ["evaluate", "--policy", "expert", "--num", "30"])
    assert result.exit_code == 0 and "expert: 30 goals of test, score 100.0, success 100.0 %" in result.output
    result = runner.invoke(app, ["evaluate", "--policy", "random", "--num", "30"])
    assert result.exit_code == 0 and "random: 30 goals of test" in result.output
