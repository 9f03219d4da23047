"""Kill and resume: real ``inrlens`` processes are SIGKILLed during a fit and in the middle of writing
a result line; the rerun must finish with every key exactly once and the same numbers as a run that was never
interrupted (CPU, one thread, so bit-identical).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from inrlens.cli import main
from inrlens.store import iter_rows

pytestmark = pytest.mark.slow  # real subprocesses (torch import ≈ seconds each); about a minute in all

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
METRICS = ("psnr", "ssim", "train_psnr", "curve", "status")

# A CLI run whose N-th result line is cut in half: it writes half the bytes of the real line, then SIGKILLs itself.
TORN_WRITER = textwrap.dedent("""
    import json, os, signal, sys
    from inrlens import store
    KILL_AT = int(os.environ["INRLENS_KILL_AT_ROW"])
    real, calls = store.append_row, [0]

    def append_row(path, row):
        calls[0] += 1
        if calls[0] == KILL_AT:
            line = json.dumps(store._clean(row), sort_keys=True, default=store._json_default).encode() + b"\\n"
            with open(path, "ab") as f:
                f.write(line[: len(line) // 2])
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        real(path, row)

    store.append_row = append_row
    import inrlens.workflows as workflows
    workflows.append_row = append_row
    from inrlens.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def cli(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inrlens.cli", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kw)


def finish(p: subprocess.Popen, timeout: float = 300) -> int:
    _, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err.decode()[-2000:]
    return p.returncode


def rows_by_key(path: Path) -> dict[str, dict]:
    rows = list(iter_rows(path))
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), "a key was written twice"
    return {r["key"]: r for r in rows}


def n_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("kill") / "cohort"
    assert main(["cohort", "sample:faces", "--n", "3", "--out", str(out), "--train.steps", "10", "--data.size", "16",
                 "--net.width", "16", "--net.depth", "3"]) == 0
    return out


def transfer_args(cohort: Path, out: Path, steps: int = 60) -> list[str]:
    # 3 images × 2 seeds × 5 regimes (none, k=0..2, random) = 30 rows, 5 stacks of 6 members
    return ["transfer", str(cohort), "sample:faces", "--limit", "3", "--seeds", "0", "1", "--out", str(out),
            "--train.steps", str(steps), "--data.size", "16", "--no-lpips", "--train.device", "cpu"]


@pytest.fixture(scope="module")
def reference(cohort, tmp_path_factory) -> dict[str, dict]:
    """The uninterrupted run (same process setup as the killed ones)."""
    out = tmp_path_factory.mktemp("ref") / "t"
    finish(cli(transfer_args(cohort, out)))
    ref = rows_by_key(out / "results.jsonl")
    assert len(ref) == 30
    return ref


def same_numbers(got: dict[str, dict], ref: dict[str, dict]) -> None:
    assert set(got) == set(ref)
    for k, r in ref.items():
        for m in METRICS:
            assert got[k][m] == r[m], (k, m, got[k][m], r[m])


def test_sigkill_during_a_fit_then_resume(cohort, reference, tmp_path):
    out = tmp_path / "t"
    p = cli(transfer_args(cohort, out))
    t0 = time.time()
    while n_lines(out / "results.jsonl") < 6:  # the first stack (6 members) is written; the second is fitting
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        assert time.time() - t0 < 240
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()
    assert p.returncode == -signal.SIGKILL
    written = n_lines(out / "results.jsonl")
    assert 6 <= written < 30, written  # killed part-way
    finish(cli(transfer_args(cohort, out) + ["--resume"]))
    same_numbers(rows_by_key(out / "results.jsonl"), reference)


@pytest.mark.parametrize("kill_at", [8, 30])
def test_sigkill_in_the_middle_of_a_result_line_then_resume(cohort, reference, tmp_path, kill_at):
    """Row 8 (inside the second stack's rows: the stack is refitted, its first row must not be written twice)
    and row 30 (the very last line of the run)."""
    out = tmp_path / "t"
    script = tmp_path / "torn_writer.py"
    script.write_text(TORN_WRITER)
    p = subprocess.Popen([sys.executable, str(script), *transfer_args(cohort, out)], env=dict(ENV, INRLENS_KILL_AT_ROW=str(kill_at)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL
    data = (out / "results.jsonl").read_bytes()
    assert not data.endswith(b"\n") and data.count(b"\n") == kill_at - 1  # whole rows, then half a line
    assert len(list(iter_rows(out / "results.jsonl"))) == kill_at - 1  # the torn half is never parsed as a row
    finish(cli(transfer_args(cohort, out) + ["--resume"]))
    after = (out / "results.jsonl").read_bytes()
    assert after.startswith(data)  # nothing already written was changed
    same_numbers(rows_by_key(out / "results.jsonl"), reference)


# A cohort run killed inside save_stack: the new model.safetensors is in place, cfg.json is not yet.
TORN_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    from safetensors.torch import save_file
    from inrlens import store
    import inrlens.workflows as workflows

    def save_stack(stack, folder, meta=None):
        os.makedirs(folder, exist_ok=True)
        tensors = {f"weight{i}": w.detach().contiguous() for i, w in enumerate(stack.weights)}
        tensors.update({f"bias{i}": b.detach().contiguous() for i, b in enumerate(stack.biases)})
        save_file(tensors, os.path.join(folder, store.MODEL_NAME))
        os.kill(os.getpid(), signal.SIGKILL)

    workflows.save_stack = save_stack
    from inrlens.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigkill_between_checkpoint_files_then_resume(tmp_path):
    """Killed after the model file and before cfg.json: --resume must not take the folder for a finished cohort."""
    args = ["cohort", "sample:faces", "--n", "3", "--train.steps", "40", "--data.size", "16", "--net.width", "16",
            "--net.depth", "3", "--train.device", "cpu"]
    ref = tmp_path / "ref"
    finish(cli([*args, "--out", str(ref)]))
    out = tmp_path / "c"
    script = tmp_path / "torn_checkpoint.py"
    script.write_text(TORN_CHECKPOINT)
    p = subprocess.Popen([sys.executable, str(script), *args, "--out", str(out)], env=ENV, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    p.communicate(timeout=300)
    assert p.returncode == -signal.SIGKILL
    assert (out / "model.safetensors").exists() and not (out / "cfg.json").exists()
    finish(cli([*args, "--out", str(out), "--resume"]))
    assert (out / "model.safetensors").read_bytes() == (ref / "model.safetensors").read_bytes()
    assert json.loads((out / "cfg.json").read_text())["net"] == json.loads((ref / "cfg.json").read_text())["net"]
    same_numbers(rows_by_key(out / "results.jsonl"), rows_by_key(ref / "results.jsonl"))
    # resuming again: nothing to do, nothing rewritten
    before = (out / "results.jsonl").read_bytes()
    finish(cli([*args, "--out", str(out), "--resume"]))
    assert (out / "results.jsonl").read_bytes() == before


# ------------------------------------------------------------------------------------------------ sweep
# `inrlens sweep` with the in-process debug executor, SIGKILLed in the middle of its N-th fit row. The spec's
# random-init baseline uses lr 1e12, so those fits diverge: they must be recorded as 'diverged' while every
# transfer fit of the same sweep carries on and finishes 'ok'.
TORN_SWEEP = textwrap.dedent("""
    import json, os, signal, sys
    from inrlens import store
    KILL_AT = int(os.environ["INRLENS_KILL_AT_ROW"])
    real, calls = store.append_row, [0]

    def append_row(path, row):
        if row.get("kind") == "fit":
            calls[0] += 1
            if calls[0] == KILL_AT:
                line = json.dumps(store._clean(row), sort_keys=True, default=store._json_default).encode() + b"\\n"
                with open(path, "ab") as f:
                    f.write(line[: len(line) // 3])
                    f.flush()
                    os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
        real(path, row)

    store.append_row = append_row
    from inrlens.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def sweep_args(out: Path) -> list[str]:
    # 2 test images × 2 seeds × (none, k=0, random) = 12 fits in 3 stacks of 4
    return ["sweep", "--out", str(out), "--data", "faces=sample:faces", "--backbones", "siren", "--depths", "none", "0", "random",
            "--seeds", "0", "1", "--n-cohort", "3", "--n-test", "2", "--net.width", "16", "--net.depth", "3",
            "--cohort-train.steps", "20", "--train.steps", "40", "--random-lr", "1e12", "--images.size", "16", "--no-lpips",
            "--cluster", "debug", "--jobs", "1", "--no-report"]


def fit_rows(out: Path) -> dict[str, dict]:
    rows = [r for r in (row for f in sorted((out / "results").glob("fits-*.jsonl")) for row in iter_rows(f))]
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)), "a key was written twice"
    return {r["key"]: r for r in rows}


def test_sweep_sigkill_mid_row_resumes_identically_and_divergence_carries_on(tmp_path):
    ref_dir = tmp_path / "ref"
    p = subprocess.run([sys.executable, "-m", "inrlens.cli", *sweep_args(ref_dir)], env=ENV, capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    ref = fit_rows(ref_dir)
    assert len(ref) == 12
    status = {(r["depth"], r["status"]) for r in ref.values()}
    assert status == {("none", "ok"), (0, "ok"), ("random", "diverged")}, status
    assert all(r["psnr"] is None for r in ref.values() if r["status"] == "diverged")

    out = tmp_path / "sweep"
    script = tmp_path / "torn_sweep.py"
    script.write_text(TORN_SWEEP)
    p = subprocess.run([sys.executable, str(script), *sweep_args(out)], env=dict(ENV, INRLENS_KILL_AT_ROW="6"),
                       capture_output=True, timeout=600)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    files = sorted((out / "results").glob("fits-*.jsonl"))
    torn = files[0].read_bytes()
    assert len(files) == 1 and not torn.endswith(b"\n") and torn.count(b"\n") == 5
    assert len(fit_rows(out)) == 5  # the torn third of row 6 is not a row
    p = subprocess.run([sys.executable, "-m", "inrlens.cli", *sweep_args(out)], env=ENV, capture_output=True, timeout=600)
    assert p.returncode == 0, p.stderr.decode()[-2000:]
    assert files[0].read_bytes() == torn  # the rerun writes a new file; the killed job's file is left as it was
    same_numbers(fit_rows(out), ref)
