"""Command-line flags made from definitions held elsewhere, so that no option is written twice.

`add_setting_flags` gives the `train` command one flag per field of `medart.config.TrainConfig`
(its name, type, choices, default and help from the dataclass); `setting_overrides` reads them
back as the dotted overrides `load_config` takes. `add_config_file` and `expand_config_file`
let a command read its options from a YAML file (`caption --config FILE`): the file's keys are
the option names (`include_edited`), turned into the very flags a person would type and parsed
by the command's own parser, so a job's config file is checked exactly like a command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from medart import config


def _help(s: config.Setting) -> str:
    default = s.default
    if isinstance(default, (list, tuple)):
        shown = " ".join(map(str, default)) or "none"
    elif default in (None, ""):
        shown = None
    else:
        shown = default
    text = s.help.replace("%", "%%")
    return text + (f" (default: {shown})" if shown is not None and s.type is not bool else "")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per training setting, each storing under its dotted path (`hldf.every`); a flag
    not given stores None, so the config file (or the default) decides."""
    for s in config.settings():
        kwargs: dict = {"dest": s.path, "default": None, "help": _help(s)}
        if s.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["help"] += f" (default: {'on' if s.default else 'off'})"
        elif s.type == list[str]:
            kwargs.update(action="append", metavar="TEXT")
        elif s.type == tuple[str, ...]:
            kwargs.update(nargs="+", metavar="NAME")
        else:
            kwargs["type"] = s.type
            if s.choices:
                kwargs["choices"] = s.choices
            else:
                kwargs["metavar"] = s.flag[2:].upper().replace("-", "_")
        parser.add_argument(s.flag, **kwargs)


def setting_overrides(args: argparse.Namespace) -> dict:
    """{dotted path: value} of the setting flags given on the command line."""
    return {s.path: getattr(args, s.path) for s in config.settings() if getattr(args, s.path, None) is not None}


def add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", dest="config_file", metavar="FILE",
                        help="YAML file of this command's options (keys: the option names with _ for -, e.g. "
                             "include_edited: true); flags given as well win")


def _tokens(action: argparse.Action, value) -> list[str]:
    flag = action.option_strings[0]
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag] if value else ["--no-" + flag[2:]]
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return [flag] if bool(value) == (action.const is True) else []
    if isinstance(action, argparse._AppendAction):
        return [t for v in (value if isinstance(value, list) else [value]) for t in (flag, str(v))]
    if action.nargs in ("+", "*"):
        return [flag, *map(str, value if isinstance(value, (list, tuple)) else [value])]
    return [flag, str(value)]


def config_file_argv(parser: argparse.ArgumentParser, path: str | Path) -> list[str]:
    """The flags that say what the YAML file at `path` says, for `parser`'s command."""
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read the config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of option names to values")
    actions = {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("config_file", "help")}
    unknown = sorted(set(values) - set(actions))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} in {path}; known: {', '.join(sorted(actions))}")
    return [t for key, value in values.items() if value is not None for t in _tokens(actions[key], value)]


def expand_config_file(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`argv` with the options of its `--config FILE` put before the ones typed (which win), for a
    command that takes a config file; the same `argv` otherwise."""
    command = parser.commands.get(argv[0]) if argv else None
    if command is None or not any(a.dest == "config_file" for a in command._actions):
        return argv
    path = None
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif token.startswith("--config="):
            path = token.split("=", 1)[1]
    return argv if path is None else argv[:1] + config_file_argv(command, path) + argv[1:]
