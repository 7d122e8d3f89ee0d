"""`stillwatch`: gateway, mock upstream, keys and accounts, telemetry export, demo."""

from __future__ import annotations

from pathlib import Path

import typer

from stillwatch.cli import accounts, analysis, demo, keys, simulate, telemetry
from stillwatch.cli.common import DatabaseOpt, DataDirOpt, fail

app = typer.Typer(
    help="stillwatch: protect a model served over an API from distillation attacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(accounts.app, name="accounts")
app.command("export")(telemetry.export)
app.command("validate")(telemetry.validate)
app.command("retention")(telemetry.retention)
app.command("demo")(demo.demo)
app.command("simulate")(simulate.simulate)
app.command("replay")(simulate.replay_cmd)
app.command("detect")(analysis.detect)
app.command("calibrate")(analysis.calibrate_cmd)
app.command("signals")(analysis.signals_cmd)
app.command("evaluate")(analysis.evaluate_cmd)


@app.command()
def serve(
    upstream: str = typer.Option("http://127.0.0.1:8700", help="Base URL of the model's API."),
    policy: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="Policy YAML (default: the embedded one)."
    ),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8780),
    database: str | None = DatabaseOpt,
    data_dir: str = DataDirOpt,
    admin_token_file: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="File holding the admin API token (or set STILLWATCH_ADMIN_TOKEN).",
    ),
    replica: str | None = typer.Option(None, help="Name of this replica in telemetry."),
    log_level: str = typer.Option("warning"),
) -> None:
    """Run the gateway: an OpenAI-compatible proxy with keys, limits, detection and telemetry."""
    from stillwatch.gateway.server import GatewaySettings, run_gateway
    from stillwatch.policy import PolicyError, load_policy

    try:
        load_policy(policy)
    except PolicyError as exc:
        raise fail(str(exc)) from None
    token = admin_token_file.read_text().strip() if admin_token_file else None
    run_gateway(
        GatewaySettings(
            upstream=upstream,
            policy=str(policy) if policy else None,
            database=database,
            data_dir=data_dir,
            host=host,
            port=port,
            admin_token=token,
            replica=replica,
        ),
        log_level=log_level,
    )


@app.command("upstream")
def upstream_cmd(
    backend: str = typer.Option("mock", help="mock (deterministic test model)."),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8700),
    latency_ms: float = typer.Option(0.0, help="Delay before the first token."),
    tokens_per_second: float = typer.Option(0.0, help="Streaming speed; 0 is unthrottled."),
    error_rate: float = typer.Option(0.0, min=0, max=1),
    timeout_rate: float = typer.Option(0.0, min=0, max=1),
    cut_rate: float = typer.Option(0.0, min=0, max=1),
    seed: int = typer.Option(0),
    log_level: str = typer.Option("warning"),
) -> None:
    """Serve a model over the OpenAI API (the mock by default)."""
    import uvicorn

    if backend != "mock":
        raise fail(f"unknown backend {backend!r}; available: mock")
    from stillwatch.upstream.mock import MockSettings, build_mock_app

    settings = MockSettings(
        latency_ms=latency_ms,
        tokens_per_second=tokens_per_second,
        error_rate=error_rate,
        timeout_rate=timeout_rate,
        cut_rate=cut_rate,
        seed=seed,
    )
    uvicorn.run(
        build_mock_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    app()
