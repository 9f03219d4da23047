"""Command-line entry point: ``inrlens <command> [flags]``; flags are generated from the config dataclasses.

Every command is a frozen dataclass with a ``run()`` method living in ``inrlens.commands``; register new
ones in :data:`COMMANDS`. Expected failures (bad input, conflicting run folder) print one line
``inrlens: error: …`` to stderr and exit with status 2; nothing already written is touched.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

# name → "module:Class" (imported lazily so that `inrlens --help` stays fast)
COMMANDS: dict[str, str] = {
    "fit": "inrlens.commands.core:Fit",
    "cohort": "inrlens.commands.core:Cohort",
    "transfer": "inrlens.commands.core:Transfer",
    "sae": "inrlens.commands.sae:Sae",
    "atoms": "inrlens.commands.sae:Atoms",
    "ablate": "inrlens.commands.sae:Ablate",
    "sweep": "inrlens.commands.study:Sweep",
    "rank": "inrlens.commands.study:Rank",
    "report": "inrlens.commands.study:Report",
    "reproduce": "inrlens.commands.reproduce:Reproduce",
}


def _load(spec: str) -> type:
    mod, cls = spec.split(":")
    return getattr(importlib.import_module(mod), cls)


def _condense(text: str) -> str:
    """tyro's boxed parse error → one line (box title, rules, suggestions and the help pointer dropped)."""
    keep = []
    for raw in text.splitlines():
        if raw.lstrip().startswith("╭"):  # box title ("Value error", "Unrecognized options")
            continue
        line = raw.strip().strip("│╰╯─ ").strip()
        if line.startswith(("Arguments similar", "Perhaps you meant", "For full helptext")):
            break
        if line and not set(line) <= set("─━═"):
            keep.append(line)
    return " ".join(keep).replace("__tyro-dummy-inner__.", "--") or "invalid command line (see inrlens --help)"


def _parse(tyro, cmds: dict[str, type], argv: list[str]):
    """Parse argv into a command; a parse error becomes one line on stderr (None returned)."""
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return tyro.extras.subcommand_cli_from_dict(cmds, args=argv, prog="inrlens")
    except SystemExit as e:
        if e.code in (0, None):  # --help and friends
            sys.stderr.write(buf.getvalue())
            raise
        print(f"inrlens: error: {_condense(buf.getvalue())}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    import tyro

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:  # import only the chosen command's module
        cmds = {argv[0]: _load(COMMANDS[argv[0]])}
    else:
        cmds = {name: _load(spec) for name, spec in COMMANDS.items()}
    from .data import ImageError
    from .store import RunConflict

    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"inrlens: warning: {msg}\n"  # one line per warning
    try:
        cmd = _parse(tyro, cmds, argv)
        if cmd is None:
            return 2
        cmd.run()
    except (ImageError, RunConflict, FileNotFoundError, ValueError) as e:
        print(f"inrlens: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inrlens: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
