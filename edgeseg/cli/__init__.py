"""The `edgeseg` command: a thin layer over the Python API, one small module per group of subcommands."""

from edgeseg.cli.main import main

__all__ = ["main"]
