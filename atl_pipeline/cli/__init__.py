"""`atl`: the operator's command line. Exit codes: 0 success, 1 the work failed (an AtlError says why), 2 usage,
3 an internal error (a bug: its traceback is saved to a file)."""

from __future__ import annotations

import argparse
import signal
import sys

from atl_pipeline.cli import docs, infra, quality, utils
from atl_pipeline.cli.common import EXIT_FAILED, EXIT_INTERNAL, EXIT_USAGE, UsageError, save_traceback
from atl_pipeline.errors import AtlError
from atl_pipeline.findings import printable
from atl_pipeline.instance import InstanceError


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="atl", description="Operate the All Things Linux infrastructure "
                                   "from domains.yml.")
    groups = root.add_subparsers(dest="group", required=True, metavar="GROUP")
    infra.register(groups.add_parser("infra", help="validate, deploy and inspect the infrastructure"))
    quality.register(groups.add_parser("quality", help="lint domains.yml and what it renders"))
    utils.register(groups.add_parser("utils", help="utilities for operators"))
    docs.register(groups.add_parser("docs", help="the generated documentation"))
    return root


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # the console script: quiet when piped into `head`
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (UsageError, InstanceError) as error:
        print(f"atl: {error}", file=sys.stderr)
        return EXIT_USAGE
    except AtlError as error:  # a collaborator's failure, told as what to do
        print(f"atl: {error}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # a bug: one line that says where the traceback is, never the traceback
        saved = save_traceback(error)
        print(printable(f"atl: internal error ({type(error).__name__}: {str(error)[:200]}); the traceback is "
                        f"in {saved}; please report it"), file=sys.stderr)
        return EXIT_INTERNAL
