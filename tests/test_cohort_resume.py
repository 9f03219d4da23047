"""A cohort interrupted mid-training resumes from its last training state, not step 0, and ends exactly where an
uninterrupted run ends (CPU: bit-identical tensors, curve, stop step); a state that is not this cohort's (another
config, torn, damaged) is ignored with one warning and training restarts at step 0."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import tiny_signals
from inrlens import fit, store, trainstate
from inrlens.config import NetConfig, TrainConfig, config_hash, from_dict, key_dict
from inrlens.fit import fit_cohort, stack_tensors
from inrlens.workflows import train_cohort

NET = NetConfig(width=16, depth=3)
TC = TrainConfig(steps=40, lr=1e-3, log_every=3, device="cpu", checkpoint_every=10)
QUIET = {"progress": False}


class Stop(Exception):
    """Raised inside the checkpoint hook: the run is interrupted right after a state was written."""


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def sigs():
    return tiny_signals(3, 16, 3, seed=1)


def interrupt_after(monkeypatch, n_states: int = 1) -> list[int]:
    """Make trainstate.save raise Stop after it has written ``n_states`` states; returns the steps written."""
    real, written = trainstate.save, []

    def save(path, state, ident):
        real(path, state, ident)
        written.append(state.step)
        if len(written) >= n_states:
            raise Stop

    monkeypatch.setattr(trainstate, "save", save)
    return written


def spy_resume(monkeypatch) -> list[int | None]:
    """Record the step each train() call resumes from (None: from step 0)."""
    real, seen = fit.train, []

    def train(*a, **kw):
        seen.append(None if kw.get("resume") is None else kw["resume"].step)
        return real(*a, **kw)

    monkeypatch.setattr(fit, "train", train)
    return seen


def same_stack(a, b) -> bool:
    ta, tb = stack_tensors(a), stack_tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def same_fit(r1, r2) -> None:
    (s1, f1, m1), (s2, f2, m2) = r1, r2
    assert same_stack(s1, s2)
    assert f1.steps == f2.steps and torch.equal(f1.curve, f2.curve)
    assert f1.steps_run == f2.steps_run and torch.equal(f1.diverged, f2.diverged)
    assert [m.psnr for m in m1] == [m.psnr for m in m2] and [m.curve for m in m1] == [m.curve for m in m2]


# ------------------------------------------------------------------------------------------------ config
def test_checkpoint_every_is_not_part_of_keys_and_is_validated():
    base = TrainConfig(steps=7, lr=1e-3)
    other = replace(base, checkpoint_every=3)
    assert "checkpoint_every" not in key_dict(other) and key_dict(other) == key_dict(base)
    # the hash every key is built from, recomputed by hand from the fields a TrainConfig had before this one
    later = ("checkpoint_every", "stop_metric")  # added after keys were fixed (stop_metric: left out at its default)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name not in later}
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    assert config_hash(other) == config_hash(base) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert config_hash({"train": other}) == config_hash({"train": base})
    assert from_dict(TrainConfig, {"checkpoint_every": 5}).checkpoint_every == 5
    for bad in (0, -3, True, 2.5):
        with pytest.raises(ValueError, match="checkpoint_every"):
            TrainConfig(checkpoint_every=bad)
    with pytest.raises(ValueError, match="checkpoint_every"):
        from_dict(TrainConfig, {"checkpoint_every": "often"})


# ------------------------------------------------------------------------------------------------ library
@pytest.mark.parametrize("backbone,fused", [("siren", True), ("siren", False), ("ffmlp", True), ("hashgrid", True)])
def test_interrupted_fit_cohort_resumes_bit_identically(tmp_path, monkeypatch, sigs, backbone, fused):
    """ffmlp: a fixed encoding (buffer); hashgrid: a trainable encoding with Adam state of its own."""
    net = replace(NET, backbone=backbone, hash_levels=2, hash_log2_table=6, hash_max_res=32, ff_features=8)
    tc = replace(TC, fused_adam=fused)
    ref = fit_cohort(sigs, net, tc, seed=3, **QUIET)
    state = tmp_path / "c" / ".train-state.safetensors"
    written = interrupt_after(monkeypatch, 2)
    with pytest.raises(Stop):
        fit_cohort(sigs, net, tc, seed=3, state=state, run="r", **QUIET)
    assert written == [10, 20] and state.is_file()
    monkeypatch.undo()
    seen = spy_resume(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a usable state: no warning
        got = fit_cohort(sigs, net, tc, seed=3, state=state, run="r", **QUIET)
    assert seen == [20]  # continued from the last state, not step 0
    same_fit(ref, got)
    assert state.is_file()  # the caller removes it once the cohort is saved


def test_target_psnr_stop_after_resume_is_the_same_step(tmp_path, monkeypatch, sigs):
    free = fit_cohort(sigs, NET, replace(TC, steps=60), seed=0, **QUIET)
    # a target first reached at a logged step past the state at step 10: the stop happens after the resume
    means = free[1].curve.mean(dim=1)
    at = next(i for i, s in enumerate(free[1].steps) if s > 12)
    target = float(means[at])
    assert float(means[: at].max()) < target
    tc = replace(TC, steps=60, target_psnr=target)
    ref = fit_cohort(sigs, NET, tc, seed=0, **QUIET)
    assert ref[1].steps_run == free[1].steps[at] + 1 < 60
    state = tmp_path / "s.safetensors"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Stop):
        fit_cohort(sigs, NET, tc, seed=0, state=state, run="r", **QUIET)
    monkeypatch.undo()
    same_fit(ref, fit_cohort(sigs, NET, tc, seed=0, state=state, run="r", **QUIET))


def test_state_holds_adam_state_curve_and_mask(tmp_path, monkeypatch, sigs):
    """The file against a naive reference: a plain torch.optim.Adam loop on the same stack, 10 steps."""
    state = tmp_path / "s.safetensors"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Stop):
        fit_cohort(sigs, NET, replace(TC, fused_adam=False), seed=0, state=state, run="r", **QUIET)
    with safe_open(str(state), framework="pt") as f:
        doc = json.loads(f.metadata()["inrlens"])
    t = load_file(str(state))
    assert doc["step"] == 10 and doc["format"] == trainstate.FORMAT

    from inrlens.nets import cohort_stack

    stack = cohort_stack(NET, 3, 3, 0)
    params = list(stack_tensors(stack).items())
    opt = torch.optim.Adam([p for _, p in params], lr=1e-3)
    coords = fit.grid(16, 16)
    targets = torch.stack([s.targets() for s in sigs])
    curve = []
    for step in range(10):
        mse = ((stack.run(stack.embed(coords), 0) - targets) ** 2).mean(dim=(1, 2))
        if step % 3 == 0:
            curve.append(fit.psnr_from_pm1_mse(mse.detach()))
        opt.zero_grad()
        mse.sum().backward()
        opt.step()
    for n, p in params:
        assert torch.allclose(t[f"param.{n}"], p.detach(), atol=1e-6), n
        st = opt.state[p]
        assert torch.allclose(t[f"adam.{n}.exp_avg"], st["exp_avg"], atol=1e-7, rtol=1e-5), n
        assert torch.allclose(t[f"adam.{n}.exp_avg_sq"], st["exp_avg_sq"], atol=1e-10, rtol=1e-4), n
        assert float(t[f"adam.{n}.step"]) == 10.0
    assert t["loop.steps"].tolist() == [0, 3, 6, 9]
    assert torch.allclose(t["loop.curve"], torch.stack(curve), atol=1e-4)
    assert t["loop.alive"].dtype == torch.bool and t["loop.alive"].all()


def test_default_interval_is_time_based(tmp_path, monkeypatch, sigs):
    calls = []
    real = trainstate.save
    monkeypatch.setattr(trainstate, "save", lambda p, s, i: (calls.append(s.step), real(p, s, i)))
    monkeypatch.setattr(fit, "STATE_SECONDS", 0.0)  # every step is "a minute later"
    fit_cohort(sigs, NET, replace(TC, steps=6, checkpoint_every=None), seed=0, state=tmp_path / "s", run="r", **QUIET)
    assert calls == [1, 2, 3, 4, 5]  # never after the last step
    calls.clear()
    monkeypatch.setattr(fit, "STATE_SECONDS", 3600.0)
    fit_cohort(sigs, NET, replace(TC, steps=6, checkpoint_every=None), seed=0, state=tmp_path / "s", run="r", **QUIET)
    assert calls == []


def test_checkpoint_every_leaves_the_result_unchanged(sigs):
    a = fit_cohort(sigs, NET, replace(TC, checkpoint_every=None), seed=0, **QUIET)
    b = fit_cohort(sigs, NET, TC, seed=0, **QUIET)
    same_fit(a, b)


# ------------------------------------------------------------------------------------------------ unusable states
def _interrupted_state(tmp_path, monkeypatch, sigs, run="r", tc=TC) -> Path:
    state = tmp_path / "st" / ".train-state.safetensors"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Stop):
        fit_cohort(sigs, NET, tc, seed=0, state=state, run=run, **QUIET)
    monkeypatch.undo()
    return state


def _restarts_at_zero(monkeypatch, sigs, state, match, tc=TC, run="r", seed=0):
    ref = fit_cohort(sigs, NET, tc, seed=seed, **QUIET)
    seen = spy_resume(monkeypatch)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        got = fit_cohort(sigs, NET, tc, seed=seed, state=state, run=run, **QUIET)
    msgs = [str(x.message) for x in w if issubclass(x.category, RuntimeWarning)]
    assert len(msgs) == 1 and match in msgs[0] and "\n" not in msgs[0] and "step 0" in msgs[0], msgs
    assert seen == [None]
    same_fit(ref, got)


@pytest.mark.parametrize("change", ["run", "lr", "seed", "images", "steps"])
def test_state_of_another_config_is_ignored(tmp_path, monkeypatch, sigs, change):
    state = _interrupted_state(tmp_path, monkeypatch, sigs)
    kw = {"run": "r", "tc": TC, "seed": 0}
    if change == "run":
        kw["run"] = "another-key"
    elif change == "lr":
        kw["tc"] = replace(TC, lr=2e-3)
    elif change == "seed":
        kw["seed"] = 1
    elif change == "steps":
        kw["tc"] = replace(TC, steps=50)
    else:
        sigs = [sigs[0], sigs[1], tiny_signals(3, 16, 3, seed=9)[2]]
    _restarts_at_zero(monkeypatch, sigs, state, "another config", **kw)


@pytest.mark.parametrize("damage", ["torn", "garbage", "flipped", "empty", "header"])
def test_torn_or_damaged_state_is_ignored(tmp_path, monkeypatch, sigs, damage):
    state = _interrupted_state(tmp_path, monkeypatch, sigs)
    data = bytearray(state.read_bytes())
    if damage == "torn":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "flipped":  # one byte of tensor data: only the digest notices
        data[-5] ^= 0x40
    elif damage == "empty":
        data = bytearray()
    else:  # a safetensors file without our header
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(2)}, str(state))
        data = bytearray(state.read_bytes())
    state.write_bytes(bytes(data))
    match = {"flipped": "damaged", "header": "no inrlens header"}.get(damage, "unreadable")
    _restarts_at_zero(monkeypatch, sigs, state, match)


def test_state_that_does_not_fit_the_stack_is_ignored(tmp_path, monkeypatch, sigs):
    """Right identity, wrong content (an Adam moment dropped): refused before anything changes."""
    state = _interrupted_state(tmp_path, monkeypatch, sigs)
    ident = trainstate.identity("r", NET, TC, 0, "cpu", fit.use_fused_adam(torch.device("cpu"), TC), sigs)
    st = trainstate.load(state, ident)
    assert st is not None and st.step == 10
    del st.adam["weight1.exp_avg"]
    trainstate.save(state, st, ident)
    _restarts_at_zero(monkeypatch, sigs, state, "incomplete")
    with pytest.raises(ValueError, match="cannot resume"):
        stack = fit.cohort_stack(NET, 3, 3, 0)
        fit.train(stack, fit._groups_for(sigs, torch.device("cpu")), TC, resume=st, progress=False)


def test_resume_false_never_reads_the_state(tmp_path, monkeypatch, sigs):
    state = _interrupted_state(tmp_path, monkeypatch, sigs)
    seen = spy_resume(monkeypatch)
    fit_cohort(sigs, NET, replace(TC, checkpoint_every=None), seed=0, state=state, run="r", resume=False, **QUIET)
    assert seen == [None] and not state.exists()  # removed up front; no state written in a run under a minute


def test_half_written_states_of_a_killed_run_are_cleared(tmp_path, sigs):
    state = tmp_path / store.TRAIN_STATE_NAME
    stale = store._tmp_name(state)  # the temp name atomic_write gives a state file being written
    stale.write_bytes(b"half a state")
    other = tmp_path / ".other.123-abcd.tmp.safetensors"
    other.write_bytes(b"not ours")
    fit_cohort(sigs, NET, replace(TC, steps=5), seed=0, state=state, run="r", **QUIET)
    assert not stale.exists() and other.exists()
    trainstate.remove(state)
    assert not state.exists() and sorted(p.name for p in tmp_path.iterdir()) == [other.name]


# ------------------------------------------------------------------------------------------------ workflows
def _model(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / store.MODEL_NAME))


def test_train_cohort_resumes_and_removes_its_state(tmp_path, monkeypatch, sigs):
    kw = {"net": NET, "train": TC, "n": 3, "progress": False}
    ref = train_cohort(sigs, tmp_path / "ref", **kw)
    out = tmp_path / "co"
    interrupt_after(monkeypatch, 3)
    with pytest.raises(Stop):
        train_cohort(sigs, out, **kw)
    assert (out / store.TRAIN_STATE_NAME).is_file() and not (out / store.MODEL_NAME).exists()
    monkeypatch.undo()
    store.release_run_lock(out)
    seen = spy_resume(monkeypatch)
    # another state interval is not another config: the folder resumes
    rows = train_cohort(sigs, out, **dict(kw, train=replace(TC, checkpoint_every=7)), resume=True)
    assert seen == [30]
    assert not (out / store.TRAIN_STATE_NAME).exists()
    a, b = _model(tmp_path / "ref"), _model(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = ("fit_seconds", "runtime", "train")  # row["train"] records the interval each run was given
    assert [{k: v for k, v in r.items() if k not in strip} for r in ref] == [{k: v for k, v in r.items() if k not in strip} for r in rows]
    assert json.loads((out / store.RUN_NAME).read_text()) == json.loads((tmp_path / "ref" / store.RUN_NAME).read_text())


def test_run_configs_never_record_the_interval(tmp_path, sigs):
    """run.json as before checkpoint_every existed: folders written then keep resuming, whatever the interval."""
    from inrlens.workflows import fit_images

    train_cohort(sigs, tmp_path / "co", NET, TC, n=3, progress=False)
    fit_images(sigs[:1], tmp_path / "fit", NET, replace(TC, steps=3), lpips=False, progress=False)
    for run in ("co", "fit"):
        recorded = json.loads((tmp_path / run / store.RUN_NAME).read_text())["train"]
        assert recorded == {f.name: getattr(TC, f.name) for f in dataclasses.fields(TC)
                            if f.name not in ("checkpoint_every", "stop_metric")} | (
            {"steps": 3} if run == "fit" else {})
    for run in ("co", "fit"):
        store.release_run_lock(tmp_path / run)
    fit_images(sigs[:1], tmp_path / "fit", NET, replace(TC, steps=3, checkpoint_every=None), lpips=False, progress=False,
               resume=True)


def test_train_cohort_without_resume_starts_over(tmp_path, monkeypatch, sigs):
    kw = {"net": NET, "train": TC, "n": 3, "progress": False}
    out = tmp_path / "co"
    interrupt_after(monkeypatch, 1)
    with pytest.raises(Stop):
        train_cohort(sigs, out, **kw)
    monkeypatch.undo()
    store.release_run_lock(out)
    seen = spy_resume(monkeypatch)
    train_cohort(sigs, out, **kw)  # same config, no --resume: trains from step 0
    assert seen == [None] and not (out / store.TRAIN_STATE_NAME).exists()


def test_sweep_cohort_job_resumes_from_its_state(tmp_path, monkeypatch):
    from inrlens.config import DataConfig
    from inrlens.sweep import SweepSpec, make_plan
    from inrlens.sweep.jobs import train_cohort_job

    def plan(run: Path):
        spec = SweepSpec(data=("faces=sample:faces",), backbones=("siren",), depths=("none",), seeds=(0,), n_cohort=2,
                         n_test=1, net=NetConfig(width=8, depth=2),
                         cohort_train=TrainConfig(steps=30, lr=1e-3, log_every=4, checkpoint_every=8),
                         train=TrainConfig(steps=4, lr=1e-3, log_every=2), images=DataConfig(size=16), lpips=False)
        return make_plan(spec, run).cohorts[0]

    ref, cohort = plan(tmp_path / "a"), plan(tmp_path / "b")
    assert ref.key == cohort.key
    assert train_cohort_job(ref, str(tmp_path / "a" / "results"))["status"] == "trained"
    interrupt_after(monkeypatch, 2)
    with pytest.raises(Stop):
        train_cohort_job(cohort, str(tmp_path / "b" / "results"))
    assert (Path(cohort.dir) / store.TRAIN_STATE_NAME).is_file()
    monkeypatch.undo()
    seen = spy_resume(monkeypatch)
    assert train_cohort_job(cohort, str(tmp_path / "b" / "results"))["status"] == "trained"
    assert seen == [16]
    assert not (Path(cohort.dir) / store.TRAIN_STATE_NAME).exists()
    a, b = _model(Path(ref.dir)), _model(Path(cohort.dir))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = store.read_rows(tmp_path / "a" / "results"), store.read_rows(tmp_path / "b" / "results")
    assert [r["sr_w"] for r in ra] == [r["sr_w"] for r in rb] and [r["psnr_mean"] for r in ra] == [r["psnr_mean"] for r in rb]


# ------------------------------------------------------------------------------------------------ a real kill
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", TQDM_DISABLE="1")
COHORT = ["cohort", "sample:faces", "--n", "3", "--train.steps", "3000", "--train.checkpoint-every", "50",
          "--train.target-psnr", "36", "--train.device", "cpu", "--data.size", "16", "--net.width", "16", "--net.depth", "3"]


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inrlens.cli", *args], env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _finish(p: subprocess.Popen) -> str:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()[-2000:]
    return err.decode()


@pytest.mark.slow
def test_sigkilled_cohort_command_resumes_from_its_state(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    p_ref = _cli([*COHORT, "--out", str(ref)])
    p = _cli([*COHORT, "--out", str(out)])
    state = out / store.TRAIN_STATE_NAME
    t_end = time.monotonic() + 300
    while not state.exists() and p.poll() is None and time.monotonic() < t_end:
        time.sleep(0.005)
    assert p.poll() is None, "the cohort finished before its first training state could be seen; raise --train.steps"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (out / store.MODEL_NAME).exists() and state.is_file()
    with safe_open(str(state), framework="pt") as f:
        step = json.loads(f.metadata()["inrlens"])["step"]
    assert step >= 50 and step % 50 == 0
    err = _finish(_cli([*COHORT, "--out", str(out), "--resume"]))
    assert "training state not used" not in err
    _finish(p_ref)
    assert not state.exists()
    a, b = _model(ref), _model(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = store.read_rows(ref / store.RESULTS_NAME), store.read_rows(out / store.RESULTS_NAME)
    assert len(rb) == 3 == len({r["key"] for r in rb})
    fields = ("key", "curve", "curve_steps", "psnr", "ssim", "steps_run")
    assert [[x[f] for f in fields] for x in ra] == [[y[f] for f in fields] for y in rb]
    assert step < ra[0]["steps_run"] < 3000  # the target stop, evaluated identically after the resume
    assert ra[0]["curve_steps"][-1] == ra[0]["steps_run"] - 1
