"""Command-line entry point: ``inrlens <command> [flags]``; flags are generated from the config dataclasses.

Every command is a frozen dataclass with a ``run()`` method living in ``inrlens.commands``; register new
ones in :data:`COMMANDS`. Whatever goes wrong, the user sees ONE line on stderr, never a traceback:

* bad input (unreadable image, conflicting run folder, bad value, missing file, a path that cannot be written:
  permission denied, read-only file system, disk full, a file where a folder is needed) →
  ``inrlens: error: …`` naming the path or value, exit status 2. These are checked before anything is
  written where possible; nothing already written is touched.
* anything unexpected (a bug) → ``inrlens: error: <Type>: <message> (traceback in PATH)``, exit status 1.
  The full traceback goes to :func:`error_log_path`: ``$XDG_STATE_HOME/inrlens/last-error.log``
  (``~/.local/state/inrlens/last-error.log`` when XDG_STATE_HOME is unset), or a file in the temp folder
  when that cannot be written. Each unexpected error replaces the previous log.
* Ctrl-C (SIGINT) or SIGTERM → ``finally`` blocks run (a sweep cancels its jobs and waits until they are gone),
  then one line saying how to continue (``--resume`` for commands that have it), exit status 130 (SIGINT) or
  143 (SIGTERM). The handlers are installed for the command's run and restored afterwards.
* output piped into a command that stops reading (``inrlens … | head``) → quiet exit, status 141 (as a
  program killed by SIGPIPE).
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import os
import signal
import sys
import warnings
from pathlib import Path

# name → "module:Class" (imported lazily so that `inrlens --help` stays fast)
COMMANDS: dict[str, str] = {
    "fit": "inrlens.commands.core:Fit",
    "cohort": "inrlens.commands.core:Cohort",
    "transfer": "inrlens.commands.core:Transfer",
    "sae": "inrlens.commands.sae:Sae",
    "atoms": "inrlens.commands.sae:Atoms",
    "ablate": "inrlens.commands.sae:Ablate",
    "steer": "inrlens.commands.steer:Steer",
    "sweep": "inrlens.commands.study:Sweep",
    "rank": "inrlens.commands.study:Rank",
    "report": "inrlens.commands.study:Report",
    "reproduce": "inrlens.commands.reproduce:Reproduce",
    "advise": "inrlens.commands.advise:Advise",
    "ladder": "inrlens.commands.ladder:Ladder",
    "calibrate": "inrlens.commands.calibrate:Calibrate",
}
EXIT_BAD_INPUT = 2
EXIT_BUG = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM exits 143
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program killed by a closed pipe
LOG_NAME = "last-error.log"
# OSErrors that come from the user's paths or machine (not from a bug): one line naming the path, exit 2
PATH_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR,
               errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.EMFILE, errno.ENFILE}
PATH_FLAGS = ("--out", "--config", "--figures")  # flags that name a path: an empty value is refused
MAX_LINE = 500
DESCRIPTION = ("INR transfer study: fit, cohort, transfer, sweep, rank, report, SAE probes and the one-command reproduce. "
               "Errors are one line on stderr (exit 2: bad input; exit 1: an unexpected error, whose traceback is saved "
               "in $XDG_STATE_HOME/inrlens/last-error.log, by default ~/.local/state/inrlens/last-error.log).")
WHAT = {"runs": "SAE run folder (from `inrlens sae`)", "images": "image file, folder or sample:NAME"}


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
        if line and not set(line) <= set("─━═-"):
            keep.append(line)
    return " ".join(keep).replace("__tyro-dummy-inner__.", "--") or "invalid command line (see inrlens --help)"


def _say(line: str) -> None:
    """One line on stderr; a closed stderr is not an error of its own."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


def _parse(tyro, cmds: dict[str, type], argv: list[str]):
    """Parse argv into a command; a parse error becomes one line on stderr (None returned)."""
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return tyro.extras.subcommand_cli_from_dict(cmds, args=argv, prog="inrlens", description=DESCRIPTION)
    except SystemExit as e:
        if e.code in (0, None):  # --help and friends
            sys.stderr.write(buf.getvalue())
            raise
        _say(f"inrlens: error: {_condense(buf.getvalue())}")
        return None


# ------------------------------------------------------------------------------------ checks before work
def _check_argv(argv: list[str]) -> None:
    """Refuse an empty path flag (``--out ""`` would silently mean the current folder)."""
    for i, tok in enumerate(argv):
        for flag in PATH_FLAGS:
            if tok == flag and i + 1 < len(argv) and not argv[i + 1].strip():
                raise ValueError(f"{flag} is empty; give a folder or file path")
            if tok.startswith(flag + "=") and not tok[len(flag) + 1 :].strip():
                raise ValueError(f"{flag} is empty; give a folder or file path")


def _device_fields(obj: object, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted field name, value) of every ``device`` string in a command and its nested configs."""
    out: list[tuple[str, str]] = []
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return out
    if getattr(obj, "cluster", None) == "slurm":  # the device is the compute node's, not this machine's
        return out
    import typing

    try:
        hints = typing.get_type_hints(type(obj), include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the field names
        hints = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name, None)
        if f.name == "device" and isinstance(v, str):
            out.append((prefix + f.name, v))
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            flat = any(getattr(m, "name", None) == "" for m in getattr(hints.get(f.name), "__metadata__", ()))
            out += _device_fields(v, prefix if flat else f"{prefix}{f.name}.")  # tyro arg(name=""): flags unprefixed
    return out


def check_device(name: str, where: str = "device") -> None:
    """One-line ValueError unless ``name`` is 'auto', 'cpu' or a CUDA device this machine has."""
    if name in ("auto", "cpu"):
        return
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{where} {name!r} is not a device; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{where} {name!r}: CUDA is not available on this machine; use 'cpu' or 'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{where} {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"{where} {name!r}: only 'auto', 'cpu', 'cuda' and 'cuda:N' are supported")


def _check_command(cmd: object, name: str) -> None:
    """Checks every command shares, run before the command writes anything."""
    for f in dataclasses.fields(cmd):  # a required list argument given no item (tyro accepts zero)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and getattr(cmd, f.name) == ():
            raise ValueError(f"{name}: no {f.name} given; name at least one {WHAT.get(f.name, f.name)}")
    for where, dev in _device_fields(cmd):
        check_device(dev, f"--{where}")


# ------------------------------------------------------------------------------------ how failures are told
def _os_message(e: OSError) -> str:
    """An OSError about a path → 'PATH: reason' (the path first, as every other error line)."""
    reason = e.strerror or _first_line(e)
    hint = {errno.ENOTDIR: " (a part of the path is a file, not a folder)", errno.EROFS: "", errno.ENOSPC: "",
            errno.EACCES: " (no permission to write or read there)"}.get(e.errno or 0, "")
    if e.filename is None:
        return _first_line(e)
    path = os.fsdecode(e.filename)
    if e.filename2 is not None:
        path = f"{path} → {os.fsdecode(e.filename2)}"
    return f"{path}: {reason}{hint}"


def error_log_path() -> Path:
    """Where the traceback of an unexpected error is written (see the module docstring)."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "inrlens" / LOG_NAME


def _save_traceback(e: BaseException, argv: list[str]) -> str | None:
    """Write the traceback to the error log (or a temp file); its path, or None when nothing could be written."""
    import tempfile
    import time
    import traceback

    text = (f"inrlens {' '.join(argv)}\n{time.strftime('%Y-%m-%d %H:%M:%S')}  python {sys.version.split()[0]}\n\n"
            + "".join(traceback.format_exception(type(e), e, e.__traceback__)))
    candidates = [error_log_path()]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    candidates.append(Path(tempfile.gettempdir()) / f"inrlens-{uid}-{LOG_NAME}")
    for path in candidates:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return str(path)
        except OSError:
            continue
    try:
        fd, name = tempfile.mkstemp(prefix="inrlens-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return name
    except OSError:
        return None


def _interrupt_hint(name: str | None) -> str:
    """How to continue after an interrupt, naming only flags the command has."""
    if name in ("sweep", "ladder"):
        return "finished fits are kept — rerun the same command to continue"
    if name == "reproduce":
        return "finished fits are kept — rerun with --resume to continue"
    cls = _load(COMMANDS[name]) if name in COMMANDS else None
    if cls is not None and "resume" in {f.name for f in dataclasses.fields(cls)}:
        return "rerun with --resume to continue"
    return "rerun the same command to start it again"


def _interrupted(e: KeyboardInterrupt, name: str | None) -> int:
    """The one line after SIGINT/SIGTERM (naming the signal when one raised it); returns the exit status."""
    signum = getattr(e, "signum", None)
    what = f" ({signal.Signals(signum).name})" if signum else ""
    _say(f"inrlens: interrupted{what}; {_interrupt_hint(name)}")
    return 128 + signum if signum else EXIT_INTERRUPTED


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit-time flush does not fail again."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv and argv[0] in COMMANDS else None
    from .allocator import keep_freed_memory
    from .interrupts import raising, shielded

    keep_freed_memory()  # CPU fits: about half their time went to page faults of freed-and-remapped tensors

    try:
        try:
            with raising():  # SIGINT and SIGTERM raise Interrupted: finally blocks run, a sweep cancels its jobs
                return _main(argv)
        except KeyboardInterrupt as e:
            with shielded():  # a second Ctrl-C while the line is printed changes nothing
                return _interrupted(e, name)
    except SystemExit:
        raise
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as e:  # a second interrupt while the first one unwound
        return _interrupted(e, name)
    except Exception as e:  # noqa: BLE001 - the last resort: one line, the traceback in a file
        from .data import ImageError
        from .store import RunConflict

        if isinstance(e, (ImageError, RunConflict, FileNotFoundError, ValueError)) and not (isinstance(e, OSError) and e.filename):
            _say(f"inrlens: error: {_first_line(e)}")
            return EXIT_BAD_INPUT
        if isinstance(e, OSError) and e.errno in PATH_ERRNOS:
            _say(f"inrlens: error: {_os_message(e)}")
            return EXIT_BAD_INPUT
        log = _save_traceback(e, argv)
        where = f"traceback in {log}" if log else "the traceback could not be saved"
        _say(f"inrlens: error: {type(e).__name__}: {_first_line(e)} ({where})")
        return EXIT_BUG


def _main(argv: list[str]) -> int:
    import tyro

    if argv and argv[0] in COMMANDS:  # import only the chosen command's module
        cmds = {argv[0]: _load(COMMANDS[argv[0]])}
    else:
        cmds = {name: _load(spec) for name, spec in COMMANDS.items()}

    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"inrlens: warning: {msg}\n"  # one line per warning
    _check_argv(argv)
    cmd = _parse(tyro, cmds, argv)
    if cmd is None:
        return EXIT_BAD_INPUT
    _check_command(cmd, argv[0] if argv else "")
    cmd.run()
    sys.stdout.flush()  # a closed pipe shows up here, inside the handlers, not at interpreter exit
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
