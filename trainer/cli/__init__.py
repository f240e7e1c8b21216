"""`recstream`: the command line."""

from trainer.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
