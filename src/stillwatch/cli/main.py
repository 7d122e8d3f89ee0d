"""`stillwatch`: gateway, mock upstream, keys and accounts, telemetry export, demo."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from stillwatch.cli import accounts, analysis, demo, keys, simulate, telemetry, watermark
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
app.add_typer(watermark.app, name="watermark")
app.command("audit")(watermark.audit_cmd)


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
    upstream_token_file: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="File holding the token the gateway presents upstream (or set "
        "STILLWATCH_UPSTREAM_TOKEN); the local upstream honours watermark keys only with it.",
    ),
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
            upstream_token=_upstream_token(upstream_token_file),
        ),
        log_level=log_level,
    )


def _upstream_token(path: Path | None) -> str | None:
    if path is not None:
        return path.read_text().strip() or None
    return os.environ.get("STILLWATCH_UPSTREAM_TOKEN") or None


@app.command("upstream")
def upstream_cmd(
    backend: str = typer.Option(
        "mock", help="mock (deterministic test model) or smollm2 (SmolLM2-135M, watermarked)."
    ),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8700),
    latency_ms: float = typer.Option(0.0, help="mock: delay before the first token."),
    tokens_per_second: float = typer.Option(0.0, help="mock: streaming speed; 0 is unthrottled."),
    error_rate: float = typer.Option(0.0, min=0, max=1, help="mock: share of 500 answers."),
    timeout_rate: float = typer.Option(0.0, min=0, max=1, help="mock: share of hung answers."),
    cut_rate: float = typer.Option(0.0, min=0, max=1, help="mock: share of cut streams."),
    seed: int = typer.Option(0, help="mock: answer seed."),
    token_file: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="smollm2: file holding the token the gateway presents (or set "
        "STILLWATCH_UPSTREAM_TOKEN). With it, other callers are refused and only the "
        "gateway chooses watermark keys.",
    ),
    scheme: str = typer.Option("greenlist", help="smollm2: watermark scheme, greenlist or gumbel."),
    delta: float | None = typer.Option(
        None, help="smollm2, greenlist: the bias added to green logits (default 2; 3 gives "
        "stronger evidence at a perplexity cost, see docs/attribution.md).",
    ),
    secrets: str | None = typer.Option(
        None, help="smollm2: watermark master secrets (default: $STILLWATCH_WATERMARK_SECRETS)."
    ),
    threads: int | None = typer.Option(None, help="smollm2: torch threads."),
    log_level: str = typer.Option("warning"),
) -> None:
    """Serve a model over the OpenAI API (the mock by default)."""
    import uvicorn

    if backend == "mock":
        from stillwatch.upstream.mock import MockSettings, build_mock_app

        settings = MockSettings(
            latency_ms=latency_ms,
            tokens_per_second=tokens_per_second,
            error_rate=error_rate,
            timeout_rate=timeout_rate,
            cut_rate=cut_rate,
            seed=seed,
        )
        asgi = build_mock_app(settings)
    elif backend == "smollm2":
        from stillwatch.upstream.local import build_smollm2_app
        from stillwatch.watermark.keys import KeyError_, MasterKeys
        from stillwatch.watermark.model import ModelUnavailable

        try:
            asgi = build_smollm2_app(
                token=_upstream_token(token_file),
                keys=MasterKeys.load(secrets),
                scheme=scheme if delta is None else {"name": scheme, "delta": delta},
                threads=threads,
            )
        except (ModelUnavailable, KeyError_, ValueError) as exc:
            raise fail(str(exc)) from None
    else:
        raise fail(f"unknown backend {backend!r}; available: mock, smollm2")
    uvicorn.run(
        asgi,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    app()
