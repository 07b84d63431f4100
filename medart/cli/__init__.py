"""The headless command line: `python -m medart <command> ...` (also the `medart` console script).

One module per group of commands, each registering its parsers with `add_parsers(sub)`:
`train` (train, generate, export-adapter), `workspace` (import, caption, export, review, organise),
`evaluate`, `reader_study`, `jobs`, `share` (push, push-dataset). Every command prints a clear message and exits non-zero
on bad input; long work shows a progress bar. The CLI calls the services (workspace,
evaluation, reader study, jobs) and the core; nothing below it imports it.
"""

from __future__ import annotations

import argparse
import os
import sys

from medart.cli.flags import expand_config_file
from medart.cli.train import train_config

__all__ = ["build_parser", "main", "parse", "train_config"]


def _threads() -> None:
    # On small CPUs OpenMP's spin-waiting makes tiny ops erratic; one thread is steadier.
    import torch

    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def _quiet_output() -> None:
    """No progress bars when stderr is not a terminal: a pipe or a log file would get one line
    per update. (Loading a model shows none anywhere: `profiles`.)"""
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")  # tqdm reads its defaults from TQDM_* variables


def build_parser() -> argparse.ArgumentParser:
    from medart.cli import evaluate, jobs, reader_study, share, train, workspace

    parser = argparse.ArgumentParser(prog="python -m medart", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (train, workspace, evaluate, reader_study, jobs, share):
        group.add_parsers(sub)
    parser.commands = sub.choices  # {command: its parser}, for config files (flags.expand_config_file)
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line, with the options of a `--config FILE` where the command takes one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(expand_config_file(parser, argv))
    if callable(getattr(args, "func", None)):
        args.func = _one_line_errors(args.func)
    return args


def _one_line_errors(command):
    """`command` with the system's errors (a name too long, a full disk) and unexpected faults
    turned into the one-line `error: ...` of a refused command (exit 2), not a traceback, in
    the terminal and in a job's log alike; MEDART_DEBUG=1 keeps the traceback."""
    import functools

    from medart.profiles import BaseModelError

    @functools.wraps(command)
    def run(args):
        try:
            return command(args)
        except (BaseModelError, ValueError, BrokenPipeError):
            raise
        except OSError as e:
            if os.environ.get("MEDART_DEBUG") or (isinstance(e, FileNotFoundError) and e.errno is None):
                raise
            name = str(e.filename or "")
            name = f": {name[:120]}…" if len(name) > 120 else f": {name}" if name else ""
            raise ValueError(f"{e.strerror or type(e).__name__}{name}") from None
        except Exception as e:
            if os.environ.get("MEDART_DEBUG"):
                raise
            first = (str(e).splitlines() or [""])[0][:200]
            raise ValueError(f"{type(e).__name__}: {first} (MEDART_DEBUG=1 shows where it happened)") from None

    return run


def main(argv: list[str] | None = None) -> int:
    was = os.environ.get("TQDM_DISABLE")
    try:
        return _main(argv)
    finally:  # a caller in the same process (a test, a script) gets its environment back
        if was is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = was


def _main(argv: list[str] | None) -> int:
    from medart.profiles import BaseModelError

    try:
        args = parse(argv)
        _threads()
        _quiet_output()
        code = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        return code
    except (BaseModelError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `medart ... | head` closed the pipe: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit would fail again
        return 1
