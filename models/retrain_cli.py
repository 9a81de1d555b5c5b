"""``finsentry retrain --now`` and ``finsentry scheduler``: thin shells over models/retrain.py
and models/scheduler.py. torch is imported inside the commands."""

from __future__ import annotations

import logging
import threading
from typing import Annotated

import typer

from finsentry.cli_settings import settings_or_exit


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def retrain_command(
    now: Annotated[bool, typer.Option("--now", help="Run the retraining job once, now.")] = False,
) -> None:
    """Retrain, gate and maybe promote, once (the scheduler runs the same job on retrain_cron)."""
    if not now:
        typer.echo(
            "error: `finsentry retrain --now` runs the job once; `finsentry scheduler` runs it "
            "on retrain_cron",
            err=True,
        )
        raise typer.Exit(2)
    settings = settings_or_exit()
    _logging(settings.log_level)
    import transformers

    from models.retrain import run_retrain
    from models.scheduler import stop_on_signals

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    stop = threading.Event()
    stop_on_signals(stop)
    outcome = run_retrain(settings, trigger="manual", stop=stop)
    typer.echo(f"run {outcome.run_id}: {outcome.decision}")
    typer.echo(f"  current   {outcome.current_version}")
    typer.echo(f"  candidate {outcome.candidate_version}")
    typer.echo(f"  reason    {outcome.reason}")
    if outcome.decision in ("failed", "interrupted", "skipped"):
        raise typer.Exit(1)


def scheduler_command() -> None:
    """Run the scheduled jobs (weekly retrain by default) until SIGTERM or Ctrl-C."""
    settings = settings_or_exit()
    _logging(settings.log_level)
    import transformers

    from finsentry.locks import LockHeld
    from models.retrain import run_retrain
    from models.scheduler import run_scheduler

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        run_scheduler(settings, lambda stop: run_retrain(settings, trigger="cron", stop=stop))
    except LockHeld as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
