"""``kflow demo``: the document-pipeline demo (``examples/demo.py``) from any install."""

from __future__ import annotations

import sys

import typer


def demo(ctx: typer.Context) -> None:
    """Run the document-pipeline demo against the running stack (all options: kflow demo --help).

    Example: kflow demo --workflows 20
    """
    from kflow.examples import demo as demo_module

    sys.argv = ["kflow demo", *ctx.args]  # the demo's own argparse parses (and documents) these
    raise typer.Exit(demo_module.main())


def register(app: typer.Typer) -> None:
    """Add ``kflow demo``."""
    app.command(
        "demo",
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
    )(demo)
