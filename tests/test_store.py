"""The one atomic write (temp files, modes, concurrent writers), clean_json, checkpoint_ready(key=), RunFolder."""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from inrlens import store
from inrlens.store import (
    RunFolder,
    append_row,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    checkpoint_ready,
    clean_json,
)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class _Umask:
    """Set the process umask for a block, restoring the old one afterwards."""

    def __init__(self, mask: int) -> None:
        self.mask = mask

    def __enter__(self) -> None:
        self.old = os.umask(self.mask)

    def __exit__(self, *exc) -> None:
        os.umask(self.old)


# ------------------------------------------------------------------------------------ atomic_write
def test_bytes_write_leaves_only_the_file(tmp_path):
    p = tmp_path / "sub" / "a.bin"  # missing folder is created
    assert atomic_write(p, b"hello") == p
    assert p.read_bytes() == b"hello"
    assert _names(p.parent) == ["a.bin"]
    atomic_write_bytes(p, b"second")  # older name, same behaviour; replaces
    atomic_write_text(tmp_path / "t.txt", "αβ\n")
    assert p.read_bytes() == b"second" and (tmp_path / "t.txt").read_bytes() == "αβ\n".encode()
    assert _names(p.parent) == ["a.bin"] and _names(tmp_path) == ["sub", "t.txt"]


def test_callable_writer_gets_a_temp_path_beside_the_file(tmp_path):
    seen = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        tmp.write_bytes(b"from writer")

    p = tmp_path / "fig.pdf"
    atomic_write(p, writer)
    tmp = seen[0]
    assert tmp.parent == tmp_path and tmp != p
    assert tmp.name.startswith(".") and tmp.suffix == ".pdf"  # hidden; suffix kept for format-from-name writers
    assert str(os.getpid()) in tmp.name
    assert p.read_bytes() == b"from writer" and _names(tmp_path) == ["fig.pdf"]
    # a second write uses a different temp name (random part)
    atomic_write(p, writer)
    assert seen[1] != seen[0]


def test_exception_in_writer_leaves_no_temp_and_old_file_intact(tmp_path):
    p = tmp_path / "w.safetensors"
    atomic_write(p, b"old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_bytes(b"half of a fi")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(p, half_then_fail)
    assert p.read_bytes() == b"old" and _names(tmp_path) == ["w.safetensors"]

    def deletes_its_temp_then_fails(tmp: Path) -> None:
        tmp.unlink()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.bin", deletes_its_temp_then_fails)
    assert _names(tmp_path) == ["w.safetensors"]  # no final file for a failed first write either


def test_bad_bytes_argument_leaves_no_temp(tmp_path):
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "x.bin", 12345)  # type: ignore[arg-type]
    assert _names(tmp_path) == []


@pytest.mark.parametrize("mask,want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_mode_follows_the_umask(tmp_path, mask, want):
    with _Umask(mask):
        a = atomic_write(tmp_path / "a.bin", b"x")
        b = atomic_write(tmp_path / "b.safetensors", lambda t: save_file({"w": np.ones(3, np.float32)}, str(t)))
        c = atomic_write_json(tmp_path / "c.json", {"k": 1})
    assert want == 0o666 & ~mask  # the reference: what open() would give
    assert [_mode(p) for p in (a, b, c)] == [want] * 3


def test_mode_replaces_the_old_files_mode(tmp_path):
    p = tmp_path / "page.html"
    p.write_text("old")
    p.chmod(0o600)
    with _Umask(0o022):
        atomic_write_text(p, "new")
    assert _mode(p) == 0o644 and p.read_text() == "new"


def test_threads_writing_one_path(tmp_path):
    p = tmp_path / "same.bin"
    payloads = [bytes([i]) * (50_000 + i) for i in range(8)]
    errors = []

    def worker(data: bytes) -> None:
        try:
            for _ in range(15):
                atomic_write(p, data)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(d,)) for d in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert p.read_bytes() in payloads  # one complete version, never a mix
    assert _names(tmp_path) == ["same.bin"]


FIGURE_WRITER = r"""
import sys
import time
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
from matplotlib.figure import Figure
from inrlens.report import figures

stem, label, ref, n = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])

def make():
    fig = Figure(figsize=(2, 1.5))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [0, 1, 0] if label == "A" else [1, 0, 1])
    ax.set_title(label)
    return fig

figures._plt()  # the report's style, as _save will have it
make().savefig(ref, dpi=150, bbox_inches="tight")  # the complete version this writer produces
Path(str(ref) + ".ready").touch()
while not ref.with_name("go").exists():
    time.sleep(0.01)
for _ in range(n):
    figures._save(make(), stem)
"""


def test_two_processes_saving_one_figure(tmp_path):
    """Two writers of report/<name>.png/.pdf at once (two report commands on one run): neither crashes, the
    files left are complete versions from one of them, and no temp files remain."""
    script = tmp_path / "writer.py"
    script.write_text(FIGURE_WRITER)
    out = tmp_path / "report"
    out.mkdir()
    stem = out / "freeze_sweep_siren"
    refs = {lab: tmp_path / f"ref_{lab}.png" for lab in "AB"}
    procs = [subprocess.Popen([sys.executable, str(script), str(stem), lab, str(ref), "12"], stderr=subprocess.PIPE)
             for lab, ref in refs.items()]
    try:
        deadline = time.time() + 120
        while not all(Path(str(r) + ".ready").exists() for r in refs.values()):
            assert all(p.poll() is None for p in procs), [p.stderr.read().decode()[-2000:] for p in procs if p.poll() is not None]
            assert time.time() < deadline
            time.sleep(0.05)
        (tmp_path / "go").touch()  # start both loops together
        errs = [p.communicate(timeout=180)[1].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errs]
    png = (out / "freeze_sweep_siren.png").read_bytes()
    assert png in {r.read_bytes() for r in refs.values()}
    pdf = (out / "freeze_sweep_siren.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert _names(out) == ["freeze_sweep_siren.pdf", "freeze_sweep_siren.png"]


# ------------------------------------------------------------------------------------ JSON
def test_clean_json_replaces_non_finite_floats():
    obj = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, 2)], "c": {"d": "nan", "e": None, "f": 0.0}, "g": 3}
    want = {"a": None, "b": [1.5, None, [None, 2]], "c": {"d": "nan", "e": None, "f": 0.0}, "g": 3}
    got = clean_json(obj)
    assert got == want
    assert math.isnan(obj["a"]) and isinstance(obj["b"][2], tuple)  # the input is not modified
    assert json.loads(json.dumps(got, allow_nan=False)) == want
    assert store._clean is clean_json  # the old private name still works


def test_atomic_write_json_is_strict(tmp_path):
    p = atomic_write_json(tmp_path / "s.json", {"x": np.float64("nan"), "y": np.float32(2.5), "z": [math.inf], "p": tmp_path})
    text = p.read_text()
    assert text.endswith("\n") and "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"x": None, "y": 2.5, "z": [None], "p": str(tmp_path)}


# ------------------------------------------------------------------------------------ checkpoints
def _write_checkpoint(folder: Path, key: str | None, digest_of: bytes | None = None) -> None:
    """A checkpoint pair written by hand (independent of save_stack): weights + cfg naming their sha256."""
    folder.mkdir(parents=True)
    save_file({"weight0": np.zeros((2, 2), np.float32)}, str(folder / store.MODEL_NAME))
    blob = digest_of if digest_of is not None else (folder / store.MODEL_NAME).read_bytes()
    cfg = {"net": {}, "out_features": 1, "meta": {} if key is None else {"key": key}, "model_sha256": hashlib.sha256(blob).hexdigest()}
    (folder / store.CFG_NAME).write_text(json.dumps(cfg))


def test_checkpoint_ready_with_key(tmp_path):
    _write_checkpoint(tmp_path / "c", "abc")
    assert checkpoint_ready(tmp_path / "c")
    assert checkpoint_ready(tmp_path / "c", key="abc")
    assert not checkpoint_ready(tmp_path / "c", key="other")  # a folder written for another spec
    _write_checkpoint(tmp_path / "nokey", None)
    assert checkpoint_ready(tmp_path / "nokey") and not checkpoint_ready(tmp_path / "nokey", key="abc")
    _write_checkpoint(tmp_path / "torn", "abc", digest_of=b"other weights")  # killed between the two renames
    assert not checkpoint_ready(tmp_path / "torn") and not checkpoint_ready(tmp_path / "torn", key="abc")
    assert not checkpoint_ready(tmp_path / "missing", key="abc")


# ------------------------------------------------------------------------------------ RunFolder
def test_run_folder_paths(tmp_path):
    r = RunFolder(tmp_path / "run")
    root = tmp_path / "run"
    assert r.root == root and RunFolder(str(root)) == r and hash(RunFolder(root)) == hash(r)
    assert r.run_json == root / "run.json"
    assert r.results_jsonl == root / "results.jsonl"
    assert r.results_dir == root / "results"
    assert r.models == root / "models"
    assert r.cohort("kodak", "siren") == root / "cohorts" / "kodak_siren"
    assert r.report == root / "report"
    assert r.submitit == root / "submitit"
    assert r.timings == root / "timings.json"
    assert r.sae("cohort-siren") == root / "sae" / "cohort-siren"
    assert r.single("ffmlp") == root / "single" / "ffmlp"
    assert r.atlas == root / "atlas"
    assert r.sweep == RunFolder(root / "sweep") and r.sweep.results_dir == root / "sweep" / "results"
    assert (r.report_md, r.report_html) == (root / "report.md", root / "report.html")
    assert not root.exists()  # paths only: nothing created
    assert r.results_files() == [] and r.rows() == [] and r.done_keys() == set()


def test_run_folder_rows_and_done_keys(tmp_path):
    r = RunFolder(tmp_path)
    append_row(r.results_jsonl, {"key": "a", "v": 1})
    append_row(r.results_dir / "job-1.jsonl", {"key": "c", "v": math.nan})
    append_row(r.results_dir / "job-0.jsonl", {"key": "b"})
    append_row(r.results_dir / "job-0.jsonl", {"note": "no key"})
    with open(r.results_dir / "job-0.jsonl", "ab") as f:
        f.write(b'{"key": "torn"')  # a writer killed mid-line
    (r.results_dir / "notes.txt").write_text('{"key": "not a jsonl file"}\n')
    assert r.results_files() == [r.results_jsonl, r.results_dir / "job-0.jsonl", r.results_dir / "job-1.jsonl"]
    assert [row.get("key") for row in r.rows()] == ["a", "b", None, "c"]
    assert r.rows()[3]["v"] is None
    assert r.done_keys() == {"a", "b", "c"}


def test_run_json_leaves_out_fields_added_later_so_older_folders_resume(tmp_path):
    """run.json records configs with config.key_dict: a knob added after a class's keys were fixed is absent
    while at its default, so a folder written before the knob existed still resumes."""
    from inrlens.config import KEY_FIELDS, NetConfig, TrainConfig
    from inrlens.store import RunConflict, prepare_run, release_run_lock

    conf = {"cmd": "fit", "net": NetConfig(width=8), "train": TrainConfig(steps=3)}
    out = prepare_run(tmp_path / "run", conf)
    release_run_lock(out)
    rec = json.loads((out / "run.json").read_text())
    assert set(rec["net"]) == set(KEY_FIELDS[NetConfig])  # e.g. no hash_levels / gauss_scale at their defaults
    assert set(rec["train"]) == set(KEY_FIELDS[TrainConfig])
    # the same config resumes; a changed later-added knob is a different run
    release_run_lock(prepare_run(tmp_path / "run", conf, resume=True))
    with pytest.raises(RunConflict):
        prepare_run(tmp_path / "run", {**conf, "net": NetConfig(width=8, gauss_scale=3.0)}, resume=True)
