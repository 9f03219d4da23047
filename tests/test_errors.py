"""Every failure of the CLI is one line on stderr, never a traceback, and bad input is refused before work.

* bad input (values, paths that cannot be written, a missing device) → ``inrlens: error: …``, exit 2, and the
  --out folder does not exist afterwards;
* an unexpected exception → ``inrlens: error: <Type>: <message> (traceback in PATH)``, exit 1, the traceback
  in PATH;
* Ctrl-C → one line naming a way to continue that the command really has, exit 130;
* stdout closed by the reader (``| head``) → no traceback, exit 0 or 141.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import inrlens.cli as cli
from inrlens.cli import COMMANDS, main

TINY_NET = ["--data.size", "16", "--net.width", "8", "--net.depth", "2", "--train.steps", "2"]
TINY = [*TINY_NET, "--no-lpips"]
# the smallest argv that parses, per command (positional paths need not exist: the run is replaced or refused first)
MINIMAL = {
    "fit": ["fit", "sample:faces"], "cohort": ["cohort", "sample:faces"], "transfer": ["transfer", "enc", "sample:faces"],
    "sae": ["sae", "inr", "sample:faces"], "atoms": ["atoms", "run"], "ablate": ["ablate", "run"],
    "steer": ["steer", "run", "--layer", "0"], "sweep": ["sweep"], "rank": ["rank", "enc"], "report": ["report", "run"],
    "reproduce": ["reproduce"], "advise": ["advise", "model"], "ladder": ["ladder"], "calibrate": ["calibrate"],
}


def command_class(name: str) -> type:
    return cli._load(COMMANDS[name])


def one_error_line(capsys) -> str:
    """stderr must hold exactly one line, starting 'inrlens: error:' (no traceback, no second line)."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("inrlens: error: "), err
    assert "Traceback" not in err
    return lines[0]


def refused(capsys, argv: list[str], *needles: str, code: int = 2) -> str:
    capsys.readouterr()
    assert main(argv) == code
    line = one_error_line(capsys)
    for n in needles:
        assert n in line, (n, line)
    return line


def test_minimal_argvs_cover_every_command():
    assert set(MINIMAL) == set(COMMANDS)


# ------------------------------------------------------------------------------------ unexpected errors
def test_unexpected_exception_is_one_line_and_the_traceback_is_logged(tmp_path, capsys, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))

    def boom(self):
        raise RuntimeError("boom in a helper\nsecond line of the message")

    monkeypatch.setattr(command_class("rank"), "run", boom)
    line = refused(capsys, ["rank", str(tmp_path)], "RuntimeError: boom in a helper", code=1)
    log = state / "inrlens" / "last-error.log"
    assert line == f"inrlens: error: RuntimeError: boom in a helper (traceback in {log})"
    assert "second line" not in line
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "def boom" not in text  # a traceback, not source
    assert "in boom" in text and "second line of the message" in text and f"rank {tmp_path}" in text
    assert cli.error_log_path() == log


def test_traceback_log_falls_back_to_the_temp_folder(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # state dir under a file: cannot be created
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR

    def boom(self):
        raise KeyError("missing-key")

    monkeypatch.setattr(command_class("rank"), "run", boom)
    line = refused(capsys, ["rank", str(tmp_path)], "KeyError", code=1)
    path = Path(line.split("(traceback in ", 1)[1].rstrip(")"))
    assert path.parent == tmp_path / "tmp" and "missing-key" in path.read_text()
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("err, needles", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/results.jsonl"), ["/data/run/results.jsonl", os.strerror(errno.ENOSPC)]),
    (OSError(errno.EFBIG, os.strerror(errno.EFBIG), "/data/run/big.safetensors"), ["/data/run/big.safetensors", os.strerror(errno.EFBIG)]),
    (OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/run"), ["/mnt/ro/run", os.strerror(errno.EROFS)]),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/root/x"), ["/root/x", os.strerror(errno.EACCES)]),
    (IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), "/tmp/a-folder"), ["/tmp/a-folder", os.strerror(errno.EISDIR)]),
    (NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "/tmp/file/sub"), ["/tmp/file/sub", "is a file, not a folder"]),
])
def test_os_errors_about_paths_are_bad_input(capsys, monkeypatch, err, needles):
    def fail(self):
        raise err

    monkeypatch.setattr(command_class("rank"), "run", fail)
    line = refused(capsys, ["rank", "enc"], *needles, code=2)
    assert line.startswith(f"inrlens: error: {err.filename}: ")


def test_output_folder_under_a_file(tmp_path, capsys):
    f = tmp_path / "somefile"
    f.write_bytes(b"keep me")
    out = f / "sub"
    refused(capsys, ["fit", "sample:faces", "--limit", "1", "--out", str(out), *TINY], str(out), "not a folder")
    assert f.read_bytes() == b"keep me"


def test_output_on_a_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that may write into a 0o555 folder (root): the chmod has no effect")
        out = ro / "run"
        refused(capsys, ["fit", "sample:faces", "--limit", "1", "--out", str(out), *TINY], str(out))
        assert not out.exists()
    finally:
        ro.chmod(0o755)


# ------------------------------------------------------------------------------------ devices
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("argv, flag", [
    (["fit", "sample:faces", "--train.device", "cuda"], "--train.device"),
    (["cohort", "sample:faces", "--train.device", "cuda:0"], "--train.device"),
    (["transfer", "enc", "sample:faces", "--train.device", "cuda"], "--train.device"),
    (["sae", "inr", "sample:faces", "--device", "cuda"], "--device"),
    (["atoms", "run", "--device", "cuda"], "--device"),
    (["ablate", "run", "--device", "cuda"], "--device"),
    (["sweep", "--device", "cuda"], "--device"),
    (["reproduce", "--device", "cuda"], "--device"),
])
def test_cuda_without_cuda_is_one_line_before_anything_is_written(tmp_path, capsys, argv, flag):
    out = tmp_path / "out"
    extra = ["--out", str(out)] if argv[0] not in ("atoms", "ablate") else []
    refused(capsys, [*argv, *extra], flag, "CUDA is not available")
    assert list(tmp_path.iterdir()) == []


def test_unknown_device_is_refused(tmp_path, capsys):
    refused(capsys, ["fit", "sample:faces", "--train.device", "tpu", "--out", str(tmp_path / "o")], "'tpu'")
    assert list(tmp_path.iterdir()) == []


def test_slurm_sweep_device_is_not_checked_here():
    """A SLURM sweep's device is the compute node's: the login node's lack of CUDA is no error."""
    Sweep = command_class("sweep")
    cmd = Sweep(exec=dataclasses.replace(Sweep().exec, cluster="slurm", device="cuda"))
    cli._check_command(cmd, "sweep")  # no error
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device 'cuda': CUDA is not available"):
            cli._check_command(Sweep(exec=dataclasses.replace(Sweep().exec, device="cuda")), "sweep")


# ------------------------------------------------------------------------------------ Ctrl-C
@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_interrupt_names_a_way_to_continue_that_exists(name, capsys, monkeypatch):
    cls = command_class(name)

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(cls, "run", interrupted)
    capsys.readouterr()
    assert main(MINIMAL[name]) == 130
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("inrlens: interrupted; "), err
    has_resume = "resume" in {f.name for f in dataclasses.fields(cls)}
    if name in ("fit", "cohort", "transfer", "sae", "reproduce"):
        assert "rerun with --resume" in err[0]
    if name == "sweep":
        assert "rerun the same command to continue" in err[0]
    assert ("--resume" in err[0]) == has_resume
    if has_resume:  # the flag the message names parses for this command
        assert main([*MINIMAL[name], "--resume"]) == 130


# ------------------------------------------------------------------------------------ broken pipes
def _inrlens() -> list[str]:
    exe = Path(sys.executable).parent / "inrlens"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "inrlens.cli"]


def _closed_stdout(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Run inrlens with its stdout a pipe whose reader has already gone: every write fails with EPIPE."""
    p = subprocess.Popen([*_inrlens(), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    p.stdout.close()
    err = p.stderr.read().decode()
    return p.wait(timeout=120), err


def test_help_into_a_closed_pipe_exits_quietly(tmp_path):
    rc, err = _closed_stdout(["--help"], tmp_path)
    assert rc in (0, 141) and err == "", err
    # the shell form; head may exit before or after inrlens writes: both must be quiet
    r = subprocess.run(["bash", "-c", f"{' '.join(_inrlens())} --help | head -1; echo \"rc=${{PIPESTATUS[0]}}\" >&2"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.stdout.startswith("usage: inrlens")
    assert r.stderr.strip() in ("rc=0", "rc=141"), r.stderr


def test_table_into_a_closed_pipe_exits_quietly_after_the_work(tmp_path):
    out = tmp_path / "run"
    rc, err = _closed_stdout(["fit", "sample:faces", "--limit", "1", "--out", str(out), *TINY], tmp_path)
    assert rc in (0, 141), err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert len((out / "results.jsonl").read_text().splitlines()) == 1  # the work was done and recorded


# ------------------------------------------------------------------------------------ empty --out and friends
@pytest.mark.parametrize("name", ["fit", "cohort", "transfer", "sae", "steer", "sweep", "report", "reproduce", "advise", "ladder",
                                  "calibrate"])
@pytest.mark.parametrize("form", ["separate", "equals"])
def test_empty_out_is_refused(name, form, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cls = command_class(name)
    assert "out" in {f.name for f in dataclasses.fields(cls)}
    argv = [*MINIMAL[name], *(["--out", ""] if form == "separate" else ["--out="])]
    refused(capsys, argv, "--out is empty")
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


def test_commands_without_out_are_the_expected_ones():
    no_out = {n for n in COMMANDS if "out" not in {f.name for f in dataclasses.fields(command_class(n))}}
    assert no_out == {"atoms", "ablate", "rank"}


def test_atoms_without_run_folders(capsys):
    refused(capsys, ["atoms"], "atoms: no runs given", "SAE run folder")


# ------------------------------------------------------------------------------------ report
def _fake_run(folder: Path, cmd: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"cmd": cmd}))
    return folder


def test_report_on_a_reproduce_root_points_at_its_sweep(tmp_path, capsys):
    run = _fake_run(tmp_path / "demo", "reproduce")
    _fake_run(run / "sweep", "sweep")
    before = sorted(run.rglob("*"))
    refused(capsys, ["report", str(run)], str(run), "reproduce", str(run / "sweep"))
    assert sorted(run.rglob("*")) == before


@pytest.mark.parametrize("cmd", ["fit", "cohort", "transfer", "sae"])
def test_report_on_another_commands_folder(tmp_path, capsys, cmd):
    run = _fake_run(tmp_path / cmd, cmd)
    refused(capsys, ["report", str(run)], str(run), f"inrlens {cmd}", "not a sweep")
    assert sorted(p.name for p in run.iterdir()) == ["run.json"]


def test_report_on_a_folder_without_results_and_out_a_file(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(capsys, ["report", str(empty)], str(empty))
    assert list(empty.iterdir()) == []
    sweep = _fake_run(tmp_path / "sweep", "sweep")
    f = tmp_path / "file.txt"
    f.write_text("keep")
    refused(capsys, ["report", str(sweep), "--out", str(f)], str(f), "not a folder")
    assert f.read_text() == "keep" and sorted(p.name for p in sweep.iterdir()) == ["run.json"]
    refused(capsys, ["report", str(tmp_path / "nope")], str(tmp_path / "nope"))


# ------------------------------------------------------------------------------------ validation before work
@pytest.mark.parametrize("flags, needle", [
    (["--train.steps", "0"], "steps must be >= 1"),
    (["--train.steps", "-3"], "steps must be >= 1"),
    (["--train.log-every", "0"], "log_every must be >= 1"),
    (["--train.lr", "nan"], "lr must be a finite number > 0"),
    (["--train.lr", "inf"], "lr must be a finite number > 0"),
    (["--train.lr", "0"], "lr must be a finite number > 0"),
    (["--train.lr", "-1e-3"], "lr must be a finite number > 0"),
    (["--train.target-psnr", "nan"], "target_psnr must be a finite number"),
    (["--train.target-psnr", "inf"], "target_psnr must be a finite number"),
    (["--net.omega0", "nan"], "omega0 must be a finite number > 0"),
    (["--net.omega0", "0"], "omega0 must be a finite number > 0"),
    (["--net.omega0-first", "-30"], "omega0_first must be a finite number > 0"),
    (["--net.ff-sigma", "inf"], "ff_sigma must be a finite number > 0"),
    (["--net.ff-sigma", "nan"], "ff_sigma must be a finite number > 0"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--limit", "-2"], "--limit must be >= 1"),
    (["--seeds", "1", "1"], "seeds"),
    (["--seeds"], "seed"),
])
def test_fit_refuses_bad_values_before_writing(tmp_path, capsys, flags, needle):
    out = tmp_path / "out"
    refused(capsys, ["fit", "sample:faces", "--out", str(out), *TINY, *flags], needle)
    assert not out.exists()


@pytest.mark.parametrize("n", ["0", "-2"])
def test_cohort_size_must_be_positive(tmp_path, capsys, n):
    out = tmp_path / "out"
    refused(capsys, ["cohort", "sample:faces", "--n", n, "--out", str(out), *TINY_NET], "--n must be >= 1", n)
    assert not out.exists()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("enc") / "cohort"
    assert main(["cohort", "sample:faces", "--n", "2", "--out", str(out), *TINY_NET]) == 0
    return out


@pytest.mark.parametrize("flags, needle", [
    (["--limit", "0"], "--limit must be >= 1"),
    (["--limit", "-1"], "--limit must be >= 1"),
    (["--seeds", "0", "2", "0"], "seeds"),
    (["--seeds"], "seed"),
    (["--train.lr", "nan"], "lr must be a finite number > 0"),
])
def test_transfer_refuses_bad_values_before_writing(tmp_path, capsys, encoder, flags, needle):
    out = tmp_path / "out"
    tiny = ["--data.size", "16", "--no-lpips", "--train.steps", "2"]
    refused(capsys, ["transfer", str(encoder), "sample:faces", "--out", str(out), *tiny, *flags], needle)
    assert not out.exists()


def test_images_under_three_pixels_are_refused_at_load_time(tmp_path, capsys):
    for h, w in ((2, 2), (2, 9), (9, 2)):
        p = tmp_path / f"tiny{h}x{w}.png"
        Image.fromarray(np.zeros((h, w), np.uint8)).save(p)
        out = tmp_path / "out"
        refused(capsys, ["fit", str(p), "--out", str(out), "--no-lpips", "--train.steps", "2"], str(p), f"{w}x{h} px", "3x3")
        assert not out.exists()
    ok = tmp_path / "three.png"
    Image.fromarray(np.full((3, 3), 128, np.uint8)).save(ok)
    assert main(["fit", str(ok), "--out", str(tmp_path / "ok"), "--net.width", "8", "--net.depth", "2", "--no-lpips",
                 "--train.steps", "2"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "ok" / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == ["three"]
