"""The `edgeseg` command: a thin layer over the Python API, one small function per subcommand.

Heavy imports (torch, the backends) happen inside the subcommand that needs them, so `--help`
is instant and the runtime subcommands never import torch.

Each group of subcommands is one module with `add_commands(sub)`; the modules share only
`edgeseg.cli.common`, and none imports another."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from edgeseg import __version__
from edgeseg.cli import bench, demo, engines, evaluate, report, serve, stream, zoo
from edgeseg.cli.common import parse_size
from edgeseg.errors import EdgesegError

__all__ = ["main", "build_parser", "parse_size"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeseg", description="Segmentation networks to edge engines.")
    parser.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (zoo, evaluate, demo, engines, bench, report, stream, serve):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except EdgesegError as exc:
        print(f"edgeseg: error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # a destination that vanished, filled up or turned read-only mid-command
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"edgeseg: error: {exc.strerror or exc}{where}", file=sys.stderr)
        print("  fix: check that the path exists, is writable and its disk has room, then run again",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
