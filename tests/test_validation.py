"""Validate before work, never after: memory budgets of cohorts and stable ranks, checkpoints whose cfg.json does not
match their tensors, count and seed flags of sweep/reproduce/advise, preset values of the wrong type.

Every refusal is one line on stderr (``inrlens: error: …``, exit 2) driven through ``inrlens.cli.main``, and the
folder the command would have written does not exist afterwards. Budgets are monkeypatched small: no test allocates
the memory it refuses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import inrlens.memory as memory
from inrlens.cli import main
from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.data import grid
from inrlens.nets import Stack, cohort_stack
from inrlens.store import CFG_NAME, MODEL_NAME, load_stack, save_stack

MiB = 2**20
SWEEP_TINY = ["--backbones", "siren", "--seeds", "0", "--n-cohort", "3", "--n-test", "1", "--net.width", "8", "--net.depth", "2",
              "--cohort-train.steps", "2", "--train.steps", "2", "--images.size", "16", "--no-lpips", "--cluster", "debug",
              "--jobs", "1", "--no-report"]


def refused(capsys, argv: list[str], *needles: str) -> str:
    """main(argv) exits 2 with exactly one stderr line 'inrlens: error: …' holding every needle."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("inrlens: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def small_budget(monkeypatch, nbytes: int) -> None:
    """Every budget (CPU and CUDA) is ``nbytes``."""
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: int(nbytes))


# ================================================================================ 1. memory estimates
def _cohort_saved_bytes(net: NetConfig, shapes: list[tuple[int, int]], C: int = 3) -> tuple[int, int]:
    """(bytes autograd saves in one cohort training forward, bytes of the parameters) — measured, not estimated."""
    st = cohort_stack(net, C, len(shapes), 0)
    for p in st.parameters():
        p.requires_grad_(True)
    seen, total = set(), [0]

    def pack(x):
        if x.data_ptr() not in seen:
            seen.add(x.data_ptr())
            total[0] += x.numel() * x.element_size()
        return x

    groups: dict[tuple[int, int], list[int]] = {}
    for i, s in enumerate(shapes):
        groups.setdefault(s, []).append(i)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        for s, idx in groups.items():
            st.run(st.embed(grid(*s)), 0, None, torch.tensor(idx)).square().mean(dim=(1, 2)).sum()
    return total[0], 4 * sum(p.numel() for p in st.parameters())


@pytest.mark.parametrize("backbone", ["siren", "ffmlp", "hashgrid"])
def test_cohort_bytes_bounds_what_training_keeps(backbone):
    """The cohort estimate ≥ saved activations + 4 copies of the parameters (value, grad, Adam m, v), and within 4× of it."""
    net = NetConfig(backbone=backbone, width=32, depth=3, ff_features=16, hash_levels=4, hash_log2_table=8)
    for shapes in ([(16, 16)] * 4, [(16, 16)] * 2 + [(8, 24)] * 3):
        saved, params = _cohort_saved_bytes(net, shapes)
        est = memory.cohort_bytes(net, shapes, 3)
        assert saved + 4 * params <= est <= 4 * (saved + 4 * params), (saved, params, est)


def test_cohort_and_rank_bytes_by_hand():
    net = NetConfig(width=8, depth=2)  # siren: d0 = 2, 3 saved (P × w) tensors per hidden layer
    # parameters: encoder (2·8+8) + (8·8+8) = 96, 3 heads of 8·1+1 → 123, ×4 = 492 elements
    # grid 4x4 (16 px, 2 heads): 16·2 + 2·3·16·8 + 2·16·8 + 4·2·16·1 = 1184; grid 2x8 (16 px, 1 head): 1120
    assert memory.cohort_bytes(net, [(4, 4), (4, 4), (2, 8)], 1) == 4 * (492 + 1184 + 1120)
    # ranks on 16 px with 2 heads of 3 channels: float32 16·(2 + 4 + 2·8 + 2·8 + 2·3), float64 3·16·8
    assert memory.rank_bytes(net, 16, 3, 2) == 4 * 16 * 44 + 8 * 3 * 16 * 8
    # more images or pixels never cost less
    assert memory.cohort_bytes(net, [(4, 4)] * 3, 1) < memory.cohort_bytes(net, [(4, 4)] * 4, 1) < memory.cohort_bytes(net, [(8, 8)] * 4, 1)
    with pytest.raises(ValueError, match="at least one image"):
        memory.cohort_bytes(net, [], 1)


def test_checks_name_sizes_and_budget():
    net = NetConfig(width=64, depth=5)
    need = memory.check_cohort(net, [(256, 256)] * 10, 3, budget_bytes=2**40)
    assert need == int(memory.cohort_bytes(net, [(256, 256)] * 10, 3) * memory.SAFETY)
    with pytest.raises(ValueError) as e:
        memory.check_cohort(net, [(256, 256)] * 9 + [(128, 96)], 3, budget_bytes=need // 3)
    msg = str(e.value)
    assert "\n" not in msg and "a cohort of 10 images (256x256, 128x96 px, width 64, depth 5)" in msg
    assert f"the memory budget is {need // 3 / MiB:.1f} MiB" in msg
    assert memory.check_rank(net, (64, 64), 3, budget_bytes=2**40) > 0
    with pytest.raises(ValueError) as e:
        memory.check_rank(net, (20000, 20000), 3, budget_bytes=2**34)
    msg = str(e.value)
    assert "\n" not in msg and "activation ranks on the 20000x20000 grid (400000000 px × width 64, 5 layers)" in msg
    assert "GiB but the memory budget is 16.0 GiB; use a smaller --grid" in msg


def test_fit_cohort_refuses_before_allocating(monkeypatch):
    from inrlens import fit
    from inrlens.data import Signal

    small_budget(monkeypatch, 64 * 1024)

    def never(*a, **k):
        raise AssertionError("the cohort stack was allocated")

    monkeypatch.setattr(fit, "cohort_stack", never)
    sigs = [Signal(f"i{i}", torch.zeros(32, 32, 3)) for i in range(3)]
    with pytest.raises(ValueError, match=r"a cohort of 3 images \(32x32 px, width 16, depth 2\) needs ~.* MiB to train but "
                                         r"the memory budget is 0\.1 MiB"):
        fit.fit_cohort(sigs, NetConfig(width=16, depth=2), TrainConfig(steps=2, device="cpu"), progress=False)


def test_cohort_command_refuses_before_writing(tmp_path, capsys, monkeypatch):
    small_budget(monkeypatch, 32 * 1024)
    out = tmp_path / "c"
    refused(capsys, ["cohort", "sample:faces", "--n", "3", "--out", str(out), "--data.size", "16", "--net.width", "8",
                     "--net.depth", "2", "--train.steps", "2"], "a cohort of 3 images (16x16 px", "memory budget is 0.0 MiB")
    assert not out.exists()


def test_fit_command_refuses_before_writing(tmp_path, capsys, monkeypatch):
    small_budget(monkeypatch, 16 * 1024)
    out = tmp_path / "f"
    refused(capsys, ["fit", "sample:faces", "--limit", "2", "--out", str(out), "--data.size", "16", "--net.width", "8",
                     "--net.depth", "2", "--train.steps", "2", "--no-lpips"], "one member needs", "memory budget")
    assert not out.exists()


def test_transfer_command_refuses_before_writing(tmp_path, capsys, monkeypatch):
    enc = tmp_path / "enc"
    save_stack(cohort_stack(NetConfig(width=8, depth=2), 1, 2, 0), enc, {"seed": 0})
    net = NetConfig(width=8, depth=2)
    # budget for one freeze-1 member (head only trains) but not for a no-freeze one: the smallest start decides
    small_budget(monkeypatch, int(memory.member_bytes(net, 256, 1, 2) * memory.SAFETY))
    out = tmp_path / "t"
    refused(capsys, ["transfer", str(enc), "sample:faces", "--limit", "1", "--out", str(out), "--data.size", "16", "--no-lpips",
                     "--freeze", "none", "1"], "one member needs", "(256 px, width 8)", "memory budget")
    assert not out.exists()
    assert main(["transfer", str(enc), "sample:faces", "--limit", "1", "--out", str(out), "--data.size", "16", "--no-lpips",
                 "--freeze", "1", "--train.steps", "2"]) == 0


@pytest.fixture()
def encoder(tmp_path) -> Path:
    """A saved siren cohort (width 8, depth 2, 2 heads of 3 channels), never trained: ranks need no training."""
    folder = tmp_path / "enc"
    save_stack(cohort_stack(NetConfig(width=8, depth=2), 3, 2, 0), folder, {"grid": [8, 8], "seed": 0})
    return folder


def test_rank_grid_over_budget_is_one_line(encoder, capsys, monkeypatch):
    from inrlens.probes import rank

    def never(*a, **k):
        raise AssertionError("the activation pass ran")

    small_budget(monkeypatch, 64 * MiB)
    monkeypatch.setattr(rank, "grid", never)
    refused(capsys, ["rank", str(encoder), "--grid", "20000", "20000"], "activation ranks on the 20000x20000 grid",
            "400000000 px × width 8", "memory budget is 64.0 MiB", "use a smaller --grid")
    monkeypatch.undo()
    small_budget(monkeypatch, 64 * MiB)
    assert main(["rank", str(encoder), "--grid", "8", "8"]) == 0  # the same budget holds a small grid


def test_advise_grid_over_budget_writes_nothing(encoder, tmp_path, capsys, monkeypatch):
    small_budget(monkeypatch, 64 * MiB)
    out = tmp_path / "advice"
    refused(capsys, ["advise", str(encoder), "--grid", "20000", "20000", "--out", str(out)], "activation ranks on the 20000x20000 grid")
    assert not out.exists()
    assert main(["advise", str(encoder), "--grid", "8", "8", "--out", str(out)]) == 0 and (out / "advise.json").exists()


def _sweep_needs(tmp_path: Path) -> tuple[int, int]:
    """(cohort training, cohort ranks) bytes of the SWEEP_TINY sweep's one cohort, from its own plan."""
    from inrlens.sweep import make_plan, resolve_specs
    from inrlens.sweep.spec import ExecSpec, SweepSpec

    spec, _ = resolve_specs(None, SweepSpec(data=("faces=sample:faces",), backbones=("siren",), seeds=(0,), n_cohort=3, n_test=1,
                                            net=NetConfig(width=8, depth=2), images=DataConfig(size=16)), ExecSpec())
    (c,) = make_plan(spec, tmp_path / "plan").cohorts
    assert len(c.shapes) == 3 and c.channels >= 1
    return (memory.check_cohort(c.net, c.shapes, c.channels, budget_bytes=2**40),
            memory.check_rank(c.net, c.grid, c.channels, len(c.images), budget_bytes=2**40))


def test_sweep_refuses_a_cohort_over_budget_before_writing(tmp_path, capsys, monkeypatch):
    cohort_need, _ = _sweep_needs(tmp_path)
    small_budget(monkeypatch, cohort_need - 1)
    out = tmp_path / "s"
    refused(capsys, ["sweep", "--out", str(out), "--data", "faces=sample:faces", *SWEEP_TINY],
            "cohort faces_siren: a cohort of 3 images (16x16 px, width 8, depth 2)", "memory budget")
    assert not out.exists()


def test_sweep_refuses_cohort_ranks_over_budget_before_writing(tmp_path, capsys, monkeypatch):
    """Budget enough to train the cohort but not for its stable ranks: refused before it trains, not after."""
    cohort_need, rank_need = _sweep_needs(tmp_path)
    assert cohort_need < rank_need  # at width 8 and depth 2 the rank pass (float64 copies) is the larger one
    small_budget(monkeypatch, cohort_need)
    out = tmp_path / "s"
    refused(capsys, ["sweep", "--out", str(out), "--data", "faces=sample:faces", *SWEEP_TINY],
            "cohort faces_siren: activation ranks on the 16x16 grid", "--images.size")
    assert not out.exists()


def test_finished_sweep_is_not_checked_again(tmp_path, capsys, monkeypatch):
    """A rerun of a finished sweep needs no memory: a smaller budget now does not refuse it."""
    out = tmp_path / "s"
    argv = ["sweep", "--out", str(out), "--data", "faces=sample:faces", *SWEEP_TINY]
    assert main(argv) == 0
    rows = (out / "results").rglob("*.jsonl")
    before = {p: p.read_bytes() for p in rows}
    small_budget(monkeypatch, 1)
    capsys.readouterr()
    assert main(argv) == 0, capsys.readouterr().err
    assert {p: p.read_bytes() for p in (out / "results").rglob("*.jsonl")} == before  # nothing redone


def test_sweep_cohort_job_checks_ranks_before_training(tmp_path, monkeypatch):
    """The job itself (a SLURM job is not checked by the sweep) refuses before fit_cohort runs."""
    from inrlens import fit
    from inrlens.sweep import make_plan, resolve_specs
    from inrlens.sweep.jobs import train_cohort_job
    from inrlens.sweep.spec import ExecSpec, SweepSpec

    spec, _ = resolve_specs(None, SweepSpec(data=("faces=sample:faces",), backbones=("siren",), seeds=(0,), n_cohort=3, n_test=1,
                                            net=NetConfig(width=8, depth=2)), ExecSpec())
    (c,) = make_plan(spec, tmp_path / "run").cohorts
    small_budget(monkeypatch, 1024)

    def never(*a, **k):
        raise AssertionError("the cohort trained")

    monkeypatch.setattr(fit, "fit_cohort", never)
    with pytest.raises(ValueError, match="activation ranks on the"):
        train_cohort_job(c, str(tmp_path / "run" / "results"))
    assert not (tmp_path / "run").exists()


def test_sweep_fit_members_are_checked_on_the_plan(tmp_path, monkeypatch):
    from inrlens.sweep import Plan, make_plan, resolve_specs
    from inrlens.sweep.jobs import check_memory
    from inrlens.sweep.spec import ExecSpec, SweepSpec

    spec, ex = resolve_specs(None, SweepSpec(data=("faces=sample:faces",), backbones=("siren",), seeds=(0,), n_cohort=3, n_test=1,
                                             depths=("random",), net=NetConfig(width=8, depth=2)), ExecSpec())
    plan = make_plan(spec, tmp_path / "run")
    (f,) = plan.fits
    per = int(memory.member_bytes(f.net, f.shape[0] * f.shape[1], f.channels, 0) * memory.SAFETY)
    small_budget(monkeypatch, per)
    check_memory(Plan((), plan.fits), ex)  # exactly one member fits
    small_budget(monkeypatch, per - 1)
    with pytest.raises(ValueError, match=rf"siren fits of faces image '{f.image}' \(random, depth random\): one member needs"):
        check_memory(Plan((), plan.fits), ex)
    check_memory(Plan((), plan.fits), ExecSpec(cluster="slurm"))  # another machine's budget: not checked here


# ================================================================================ 2. cfg.json against the tensors
NETS = {"siren": NetConfig(width=16, depth=3),
        "ffmlp": NetConfig(backbone="ffmlp", width=16, depth=3, ff_features=8),
        "hashgrid": NetConfig(backbone="hashgrid", width=16, depth=3, hash_levels=2, hash_log2_table=6)}


def _ckpt(tmp_path: Path, backbone: str) -> Path:
    folder = tmp_path / backbone
    save_stack(cohort_stack(NETS[backbone], 3, 2, 0), folder, {"grid": [8, 8], "seed": 0})
    return folder


def _edit_cfg(folder: Path, **net_fields) -> None:
    cfg = json.loads((folder / CFG_NAME).read_text())
    for k, v in net_fields.items():
        if k == "out_features":
            cfg["out_features"] = v
        else:
            cfg["net"][k] = v
    (folder / CFG_NAME).write_text(json.dumps(cfg))


def _edit_tensors(folder: Path, drop: str | None = None, add: dict | None = None) -> None:
    """Rewrite model.safetensors without ``drop`` / with ``add``; cfg.json's digest is removed (as in an older
    checkpoint), so that only the tensors differ."""
    t = load_file(str(folder / MODEL_NAME))
    if drop:
        del t[drop]
    t.update(add or {})
    save_file(t, str(folder / MODEL_NAME))
    cfg = json.loads((folder / CFG_NAME).read_text())
    cfg.pop("model_sha256", None)
    (folder / CFG_NAME).write_text(json.dumps(cfg))


def _weight_shape(folder: Path, name: str) -> tuple[int, ...]:
    return tuple(load_file(str(folder / MODEL_NAME))[name].shape)


@pytest.mark.parametrize("backbone", list(NETS))
def test_cfg_width_depth_out_features_are_checked(tmp_path, capsys, backbone):
    folder = _ckpt(tmp_path, backbone)
    load_stack(folder)  # as saved: fine
    cases = [
        ({"width": 32}, f"{folder / CFG_NAME} says width 32 but weight0 is {_weight_shape(folder, 'weight0')}"),
        ({"depth": 2}, f"{folder / CFG_NAME} says depth 2 (weight0..weight2) but model.safetensors holds weight0..weight3 (depth 3)"),
        ({"depth": 4}, f"{folder / CFG_NAME} says depth 4 (weight0..weight4) but model.safetensors holds weight0..weight3 (depth 3)"),
        ({"out_features": 1}, f"{folder / CFG_NAME} says out_features 1 but weight3 is (2, 16, 3)"),
    ]
    original = (folder / CFG_NAME).read_text()
    for edit, line in cases:
        _edit_cfg(folder, **edit)
        with pytest.raises(ValueError) as e:
            load_stack(folder)
        assert str(e.value) == line
        out = tmp_path / "t"
        refused(capsys, ["transfer", str(folder), "sample:faces", "--out", str(out), "--data.size", "8", "--no-lpips"], line)
        assert not out.exists()
        refused(capsys, ["rank", str(folder)], line)
        (folder / CFG_NAME).write_text(original)
    assert load_stack(folder)[0].cfg == NETS[backbone]


def test_width_of_a_middle_layer_names_that_layer(tmp_path):
    """Tensors of another width from layer 1 on (a hand-made file): the first mismatching tensor is named."""
    folder = _ckpt(tmp_path, "siren")
    t = load_file(str(folder / MODEL_NAME))
    _edit_tensors(folder, add={"weight1": torch.zeros(1, 16, 64), "bias1": torch.zeros(1, 1, 64), "weight2": torch.zeros(1, 64, 64)})
    with pytest.raises(ValueError) as e:
        load_stack(folder)
    assert str(e.value) == f"{folder / CFG_NAME} says width 16 but weight1 is (1, 16, 64)"
    assert tuple(t["weight1"].shape) == (1, 16, 16)


@pytest.mark.parametrize("backbone, name, field, value, shown", [
    ("ffmlp", "fourier", "ff_features", 4, "ffmlp whose fourier is (members, 2, 4) but fourier is (1, 2, 8)"),
    ("hashgrid", "table", "hash_levels", 3, "hashgrid whose table is (members, 3, 64, 2) but table is (1, 2, 64, 2)"),
    ("hashgrid", "table", "hash_log2_table", 7, "hashgrid whose table is (members, 2, 128, 2) but table is (1, 2, 64, 2)"),
])
def test_encoding_settings_are_checked(tmp_path, capsys, backbone, name, field, value, shown):
    folder = _ckpt(tmp_path, backbone)
    _edit_cfg(folder, **{field: value})
    refused(capsys, ["rank", str(folder)], f"{folder / CFG_NAME} says a {shown}")


@pytest.mark.parametrize("backbone, name", [("ffmlp", "fourier"), ("hashgrid", "table")])
def test_missing_encoding_tensor(tmp_path, capsys, backbone, name):
    folder = _ckpt(tmp_path, backbone)
    _edit_tensors(folder, drop=name)
    refused(capsys, ["rank", str(folder)], f"{folder / MODEL_NAME}: has no tensor {name}, which a {backbone} of depth 3 needs")


@pytest.mark.parametrize("backbone", ["siren", "hashgrid"])
def test_unknown_tensors_are_refused(tmp_path, capsys, backbone):
    folder = _ckpt(tmp_path, backbone)
    _edit_tensors(folder, add={"lora_A": torch.zeros(2, 2), "fourier": torch.zeros(1, 2, 4)} if backbone == "siren"
                  else {"lora_A": torch.zeros(2, 2)})
    want = "fourier, lora_A" if backbone == "siren" else "lora_A"
    refused(capsys, ["rank", str(folder)], f"{folder / MODEL_NAME}: holds tensors that cfg.json does not describe: {want}")


def test_member_counts_and_bad_entries(tmp_path, capsys):
    folder = _ckpt(tmp_path, "siren")  # encoder layers 1 member, head 2
    _edit_tensors(folder, add={"bias3": torch.zeros(3, 1, 3)})
    refused(capsys, ["rank", str(folder)], f"{folder / MODEL_NAME}: bias3 has 3 members but weight3 has 2")
    folder = _ckpt(tmp_path / "b", "siren")
    _edit_cfg(folder, out_features=0)
    refused(capsys, ["rank", str(folder)], "out_features must be an integer >= 1, got 0")
    _edit_cfg(folder, out_features=3, width="wide")
    refused(capsys, ["rank", str(folder)], f"{folder / CFG_NAME}: net.width: expected an integer, got 'wide'")
    _edit_cfg(folder, width=16, lora=True)
    refused(capsys, ["rank", str(folder)], "unknown field(s) lora")


def test_every_backbone_round_trips(tmp_path):
    """The checks accept every built-in backbone's own checkpoints (cohort and independent members)."""
    from inrlens.backbones import backbone_names

    for bb in backbone_names():
        net = NetConfig(backbone=bb, width=8, depth=2, ff_features=4, hash_levels=2, hash_log2_table=5)
        for st in (cohort_stack(net, 1, 3, 0), Stack.init(net, 3, [0, 1])):
            save_stack(st, tmp_path / bb)
            back, _ = load_stack(tmp_path / bb)
            assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), st.state_dict().values()))


# ================================================================================ 3. counts and seeds
@pytest.mark.parametrize("flags, needle", [
    (["--n-cohort", "0"], "n_cohort must be >= 1, got 0"),
    (["--n-cohort", "-2"], "n_cohort must be >= 1, got -2"),
    (["--n-test", "0"], "n_test must be >= 1, got 0"),
    (["--max-members", "0"], "max_members must be >= 1"),
    (["--max-members", "-1"], "max_members must be >= 1"),
    (["--jobs", "0"], "jobs must be >= 1"),
    (["--seeds"], "seeds: give at least one seed"),
    (["--seeds", "1", "1"], "seeds: seeds repeat (1, 1)"),
])
def test_sweep_counts_and_seeds(tmp_path, capsys, flags, needle):
    out = tmp_path / "s"
    argv = ["sweep", "--out", str(out), "--data", "faces=sample:faces", *SWEEP_TINY]
    # the flag given last wins: append the bad value after SWEEP_TINY's own
    refused(capsys, [*argv, *flags], needle)
    assert not out.exists()


REPRO = """
[datasets]
faces = "sample:faces"
[sweep]
backbones = ["siren"]
depths = ["none"]
seeds = [0]
n_cohort = 3
n_test = 1
lpips = false
net = { width = 8, depth = 2 }
cohort_train = { steps = 2, target_psnr = 30.0, lr = 1e-3 }
train = { steps = 2, lr = 1e-3 }
images = { size = 16 }
[exec]
cluster = "debug"
jobs = 1
threads = 1
[sae]
n = 16
k = 2
steps = 2
[study]
single_steps = 2
atlas_top = 2
ablate_top = 1
"""


def _preset(tmp_path: Path, old: str, new: str) -> Path:
    assert old in REPRO, old
    p = tmp_path / "p.toml"
    p.write_text(REPRO.replace(old, new, 1))
    return p


@pytest.mark.parametrize("old, new, needles", [
    ("n_cohort = 3", "n_cohort = 0", ["n_cohort must be >= 1, got 0"]),
    ("n_test = 1", "n_test = 0", ["n_test must be >= 1, got 0"]),
    ("threads = 1", "threads = 1\nmax_members = 0", ["max_members must be >= 1"]),
    ("jobs = 1", "jobs = 0", ["jobs must be >= 1"]),
    ("seeds = [0]", "seeds = []", ["[sweep]", "give at least one seed"]),
    ("seeds = [0]", "seeds = [2, 2]", ["[sweep]", "seeds repeat (2, 2)"]),
    # wrong types, in every table
    ("net = { width = 8,", 'net = { width = "abc",', ["net.width", "expected an integer", "'abc'"]),
    ("seeds = [0]", "seeds = 3", ["[sweep] seeds: expected a list, got 3"]),
    ("jobs = 1", 'jobs = "2"', ["[exec] jobs: expected an integer, got '2'"]),
    ("threads = 1", "threads = 1.5", ["[exec] threads", "expected an integer"]),
    ("lpips = false", 'lpips = "no"', ["[sweep] lpips: expected true or false, got 'no'"]),
    ("images = { size = 16 }", 'images = { size = "16" }', ["[sweep] images.size: expected an integer, got '16'"]),
    ("k = 2", 'k = "2"', ["[sae] k", "expected an integer"]),
    ("atlas_top = 2", "atlas_top = [2]", ["[study] atlas_top"]),
    ('faces = "sample:faces"', "faces = 3", ["[datasets] faces: expected a path or sample:NAME string, got 3"]),
])
def test_preset_values_are_checked_before_anything_is_written(tmp_path, capsys, old, new, needles):
    p = _preset(tmp_path, old, new)
    out = tmp_path / "run"
    line = refused(capsys, ["reproduce", "--preset", str(p), "--out", str(out)], *needles)
    assert line.startswith("inrlens: error: preset p: "), line
    assert not out.exists()


def test_reproduce_jobs_flag(tmp_path, capsys):
    p = _preset(tmp_path, "jobs = 1", "jobs = 1")
    out = tmp_path / "run"
    refused(capsys, ["reproduce", "--preset", str(p), "--out", str(out), "--jobs", "0"], "--jobs", "jobs must be >= 1")
    assert not out.exists()


@pytest.mark.parametrize("flags, needle", [
    (["--limit", "0"], "--limit must be >= 1, got 0"),
    (["--limit", "-1"], "--limit must be >= 1, got -1"),
    (["--seeds", "0", "0"], "--seeds: seeds repeat (0, 0)"),
    (["--seeds"], "--seeds: give at least one seed"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--init-seeds", "0"], "--init-seeds must be >= 1"),
])
def test_advise_counts_and_seeds(encoder, tmp_path, capsys, flags, needle):
    out = tmp_path / "advice"
    refused(capsys, ["advise", str(encoder), "--verify", "sample:faces", "--data.size", "8", "--out", str(out), *flags], needle)
    assert not out.exists()
