"""Scale ladder: the rung grid (order, folder names, selection), exactly the named pairs per rung, a tiny real
ladder through the CLI (table, figure, summary against a naive recomputation from the rows), interrupt-and-rerun
resume (every key exactly once across the rung folders), and the summary's gain / interval / best-k set against
hand-computed values."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps

from inrlens import ladder as L
from inrlens.cli import main
from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.ladder import LadderSpec, Rung
from inrlens.store import read_rows
from inrlens.sweep import ExecSpec, SweepSpec


def write_set(folder: Path, n: int, channels: int, seed: int, size: int = 16) -> Path:
    """n smooth random images (sums of a few sinusoids plus a little noise), size × size PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = np.zeros((size, size, channels))
        for c in range(channels):
            f = rng.uniform(0.5, 3.0, size=(3, 2))
            ph = rng.uniform(0, 2 * np.pi, size=3)
            img[:, :, c] = sum(np.sin(2 * np.pi * (a * xx + b * yy) + p) for (a, b), p in zip(f, ph)) / 6 + 0.5
        img = np.clip(img + 0.03 * rng.standard_normal(img.shape), 0, 1)
        arr = (img * 255).round().astype(np.uint8)
        Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ladder_sets")
    return {"a": write_set(root / "a", 4, 3, 0), "b": write_set(root / "b", 4, 1, 1)}


def tiny_base(**kw) -> SweepSpec:
    base = dict(seeds=(0,), n_cohort=2, n_test=2, net=NetConfig(depth=2, ff_features=8),
                cohort_train=TrainConfig(steps=20, lr=1e-3, log_every=10, target_psnr=30.0),
                train=TrainConfig(steps=20, lr=1e-3, log_every=10), lpips=False)
    base.update(kw)
    return SweepSpec(**base)


# ------------------------------------------------------------------------------------------------ grid
def test_rung_grid_order_names_and_selection():
    spec = LadderSpec(scales=(0.25, 0.125, 1.0), widths=(64, 8))
    grid = L.rung_grid(spec)
    # cost = scale² · width²: (1/8, 8) = 1, (1/4, 8) = 4, (1/8, 64) = 64 = (1, 8) → smaller scale first,
    # (1/4, 64) = 256, (1, 64) = 4096
    assert [r.name for r in grid] == ["s0.125_w8", "s0.25_w8", "s0.125_w64", "s1_w8", "s0.25_w64", "s1_w64"]
    assert [r.cost for r in grid] == [1.0, 4.0, 64.0, 64.0, 256.0, 4096.0]
    assert L.rung_name(0.5, 128) == "s0.5_w128" and L.rung_name(1.0, 256) == "s1_w256"
    assert [L.scale_label(s) for s in (0.125, 0.25, 0.5, 1.0, 0.3)] == ["1/8", "1/4", "1/2", "1", "0.3"]
    assert [r.name for r in L.select_rungs(grid, ["s0.25"])] == ["s0.25_w8", "s0.25_w64"]
    assert [r.name for r in L.select_rungs(grid, ["w8", "s1_w64"])] == ["s0.125_w8", "s0.25_w8", "s1_w8", "s1_w64"]
    assert L.select_rungs(grid, []) == grid
    with pytest.raises(ValueError, match="names no rung"):
        L.select_rungs(grid, ["s0.5_w8"])
    assert L.rung_dir("RUN", Rung(0.125, 64)) == Path("RUN/rungs/s0.125_w64")


@pytest.mark.parametrize("kw, msg", [
    (dict(scales=(0.125, 0.125)), "given twice"),
    (dict(scales=(0.0,)), "finite number > 0"),
    (dict(scales=(float("nan"),)), "finite number > 0"),
    (dict(widths=(0,)), "integer >= 1"),
    (dict(widths=(8, 8)), "given twice"),
    (dict(base=SweepSpec(net=NetConfig(width=32))), "--widths"),
    (dict(base=SweepSpec(images=DataConfig(scale=0.5))), "--scales"),
    (dict(base=SweepSpec(images=DataConfig(size=32))), "--scales"),
    (dict(base=SweepSpec(data=("a=x",))), "--data"),
    (dict(base=SweepSpec(sources=("a",))), "--pairs"),
    (dict(base=SweepSpec(backbones=("siren",)), backbones=("ffmlp",)), "--backbones"),
    (dict(backbones=("nope",)), "unknown"),
])
def test_spec_validation(kw, msg):
    with pytest.raises(ValueError, match=msg):
        LadderSpec(**kw)


def test_pairs_parse_and_check():
    assert L.parse_pairs(["a:a", "a:b", "b:b"]) == [("a", "a"), ("a", "b"), ("b", "b")]
    for bad, msg in ((["a"], "SOURCE:TARGET"), (["a:"], "SOURCE:TARGET"), (["a:b:c"], "SOURCE:TARGET"),
                     (["a:b", "a:b"], "twice"), ([], "no pairs")):
        with pytest.raises(ValueError, match=msg):
            L.parse_pairs(bad)
    with pytest.raises(ValueError, match="'c' is not defined"):
        L.parse_pairs(["a:c"], {"a": "x", "b": "y"})


def test_rung_plan_has_exactly_the_pairs(sets, tmp_path):
    """Per-source sweeps merged: the pairs' transfer fits, one random-init baseline per target (shared target b
    kept once), nothing of the unnamed pair b → a; scale and width as the rung says."""
    spec = LadderSpec(data=(f"a={sets['a']}", f"b={sets['b']}"), pairs=("a:b", "b:b", "a:a"), backbones=("siren", "ffmlp"),
                      scales=(0.5,), widths=(8,), base=tiny_base())
    rung = Rung(0.5, 8)
    specs = L.source_specs(spec, rung)
    assert [(s.sources, s.targets) for s in specs] == [(("a",), ("b", "a")), (("b",), ("b",))]
    assert all(s.net.width == 8 and s.images.scale == 0.5 and s.images.size is None for s in specs)
    plan = L.rung_plan(spec, rung, tmp_path)
    keys = [f.key for f in plan.fits]
    assert len(keys) == len(set(keys))
    transfer = Counter((f.backbone, f.source, f.target) for f in plan.fits if f.regime == "transfer")
    want = {(b, s, t) for b in ("siren", "ffmlp") for s, t in (("a", "b"), ("b", "b"), ("a", "a"))}
    assert set(transfer) == want and all(v == 3 * 2 for v in transfer.values())  # (none, 0, 1) × 2 images × 1 seed
    random = Counter((f.backbone, f.target) for f in plan.fits if f.regime == "random")
    assert random == {(b, t): 2 for b in ("siren", "ffmlp") for t in ("a", "b")}
    assert {c.source for c in plan.cohorts} == {"a", "b"} and len(plan.cohorts) == 4
    assert {tuple(f.shape) for f in plan.fits} == {(8, 8)}  # 16 px natives at scale 1/2
    assert all(c.net.width == 8 for c in plan.cohorts)


# ------------------------------------------------------------------------------------------------ tiny real ladder
def cli_args(sets: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["ladder", "--out", str(out), "--data", f"a={sets['a']}", "--data", f"b={sets['b']}", "--pairs", "a:a", "a:b", "b:b",
            "--scales", "0.5", "1", "--widths", "8", "--base.seeds", "0", "--base.n-cohort", "2", "--base.n-test", "2",
            "--base.net.depth", "2", "--base.net.ff-features", "8", "--base.cohort-train.steps", "20",
            "--base.cohort-train.lr", "1e-3", "--base.train.steps", "20", "--base.train.lr", "1e-3", "--cluster", "debug",
            "--jobs", "1", *extra]


def naive_gain(rows: list[dict]) -> dict[tuple, tuple]:
    """(backbone, source, target) → (k*, mean, lo, hi, n) of PSNR(k*) − PSNR(none), by plain loops and scipy's t."""
    per: dict[tuple, dict] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.get("kind") == "fit" and r["regime"] == "transfer" and r["status"] == "ok":
            d = "none" if r["freeze"] is None else r["freeze"]
            per[(r["backbone"], r["source"], r["target"])][d][(r["image"], r["seed"])] = r["psnr"]
    out = {}
    for c, by in per.items():
        ks = sorted(k for k in by if k != "none")
        kstar = max(ks, key=lambda k: (sum(by[k].values()) / len(by[k]), -k))
        d = np.array([by[kstar][u] - by["none"][u] for u in by[kstar] if u in by["none"]])
        n = len(d)
        half = sps.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
        out[c] = (kstar, d.mean(), d.mean() - half, d.mean() + half, n)
    return out


def test_tiny_ladder_cli_writes_table_and_figure(sets, tmp_path, capsys):
    out = tmp_path / "lad"
    assert main(cli_args(sets, out, "--plan")) == 0
    printed = capsys.readouterr().out
    assert "s0.5_w8" in printed and "s1_w8" in printed and "44/44" in printed
    assert not out.exists()  # --plan writes nothing

    assert main(cli_args(sets, out)) == 0
    for name in ("ladder.md", "ladder.csv", "ladder.json", "ladder.png", "ladder.pdf", "run.json", "grid.json"):
        assert (out / name).is_file(), name
    with Image.open(out / "ladder.png") as im:
        assert im.size[0] > 400 and im.size[1] > 400
    summary = json.loads((out / "ladder.json").read_text())
    for rung, shape in (("s0.5_w8", [8, 8]), ("s1_w8", [16, 16])):
        rows = read_rows(out / "rungs" / rung / "results")
        fits = [r for r in rows if r["kind"] == "fit"]
        assert len(fits) == 44 and len({r["key"] for r in fits}) == 44
        assert {(r["source"], r["target"]) for r in fits if r["regime"] == "transfer"} == {("a", "a"), ("a", "b"), ("b", "b")}
        assert all(r["shape"] == shape and r["net"]["width"] == 8 for r in fits)
        assert all(r["data"]["scale"] == float(rung[1:].split("_")[0]) for r in fits)
        ref = naive_gain(rows)
        mine = {(r["backbone"], r["source"], r["target"]): r for r in summary["rows"] if r["rung"] == rung}
        assert set(mine) == set(ref)
        for c, (k, m, lo, hi, n) in ref.items():
            r = mine[c]
            assert r["best_k"] == k and r["n"] == n == 2
            assert r["gain"] == pytest.approx(m, abs=1e-9)
            assert r["gain_lo"] == pytest.approx(lo, abs=1e-6) and r["gain_hi"] == pytest.approx(hi, abs=1e-6)
    md = (out / "ladder.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("| siren |") or ln.startswith("| ffmlp |")]
    assert len(table) == 2 * 3 * 2  # backbones × pairs × rungs
    assert "b → a" not in md
    status = {s["rung"]: s["status"] for s in summary["rungs"]}
    assert status == {"s0.125_w8": "not in this ladder", "s0.25_w8": "not in this ladder", "s0.5_w8": "complete",
                      "s1_w8": "complete"}
    assert "Missing rungs: s0.125_w8, s0.25_w8" in md
    assert "95% Student-t interval" in md
    # a rung is a sweep folder for `inrlens report`; the ladder's root is not
    assert main(["report", str(out / "rungs" / "s1_w8")]) == 0 and (out / "rungs" / "s1_w8" / "report" / "table1.md").is_file()
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    assert "is an `inrlens ladder` run" in capsys.readouterr().err


def test_bad_input_is_one_line_and_writes_nothing(sets, tmp_path, capsys):
    out = tmp_path / "bad"
    args = cli_args(sets, out)
    args[args.index("a:b")] = "a:c"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset 'c' is not defined" in err[0] and err[0].startswith("inrlens: error:")
    assert main(cli_args(sets, out, "--base.net.width", "32")) == 2
    assert "--widths" in capsys.readouterr().err
    assert main(cli_args(sets, out, "--rungs", "s2_w8")) == 2
    assert "names no rung" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ resume
def test_interrupted_ladder_resumes_every_key_once(sets, tmp_path, monkeypatch):
    """First only the first rung (--rungs), then the whole ladder interrupted halfway through the second rung,
    then the same ladder again: every planned key has exactly one row across the rung folders, the first rung is
    not touched by the later runs, and the summary reports the partial rung while it is partial."""
    import inrlens.sweep as sweep_pkg

    spec = LadderSpec(data=(f"a={sets['a']}", f"b={sets['b']}"), pairs=("a:b", "b:b"), backbones=("siren",),
                      scales=(0.5, 1.0), widths=(8,), base=tiny_base())
    ex = ExecSpec(cluster="debug", jobs=1)
    run = tmp_path / "lad"
    quiet = lambda *a, **k: None  # noqa: E731
    L.run_ladder(spec, ex, run, rungs=("s0.5_w8",), log=quiet)
    first = run / "rungs" / "s0.5_w8" / "results"
    assert not (run / "rungs" / "s1_w8").exists()
    files_before = {p.name: p.read_bytes() for p in first.glob("*.jsonl")}
    summ = L.ladder_summary(run)
    assert {s["rung"]: s["status"] for s in summ["rungs"]}["s1_w8"] == "not run"
    assert {r["rung"] for r in summ["rows"]} == {"s0.5_w8"}

    real = sweep_pkg.run_sweep
    calls = []

    def interrupted(spec_, ex_, folder, log=print, plan=None):
        calls.append(Path(folder).name)
        if Path(folder).name == "s1_w8":  # write half of the rung's fits, then Ctrl-C
            half = type(plan)(plan.cohorts, plan.fits[: len(plan.fits) // 2])
            real(spec_, ex_, folder, log=log, plan=half)
            raise KeyboardInterrupt
        return real(spec_, ex_, folder, log=log, plan=plan)

    monkeypatch.setattr(sweep_pkg, "run_sweep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        L.run_ladder(spec, ex, run, log=quiet)
    assert calls == ["s0.5_w8", "s1_w8"]
    summ = L.ladder_summary(run)
    st = {s["rung"]: s for s in summ["rungs"]}
    assert st["s0.5_w8"]["status"] == "complete"
    assert st["s1_w8"]["status"] == f"partial ({st['s1_w8']['planned'] // 2}/{st['s1_w8']['planned']} fits)"
    monkeypatch.setattr(sweep_pkg, "run_sweep", real)

    res = L.run_ladder(spec, ex, run, log=quiet)
    assert not res["errors"] and all(r["done"] == r["fits"] for r in res["rungs"])
    assert {p.name: p.read_bytes() for p in first.glob("*.jsonl")} == files_before  # nothing redone in rung 1
    planned, seen = set(), Counter()
    for rung in ("s0.5_w8", "s1_w8"):
        plan = json.loads((run / "rungs" / rung / "plan.json").read_text())
        assert len(plan["fits"]) == 2 * 3 * 2 + 2  # 2 pairs × (none, 0, 1) × 2 images + 2 random-init fits of b
        planned |= set(plan["fits"])
        seen.update(r["key"] for r in read_rows(run / "rungs" / rung / "results") if r["kind"] == "fit")
    assert set(seen) == planned and set(seen.values()) == {1}
    assert all(s["status"] == "complete" for s in L.ladder_summary(run)["rungs"] if s["scale"] in (0.5, 1.0))
    # a ladder with other pairs into the same folder is refused; adding a width is not
    from inrlens.store import RunConflict

    with pytest.raises(RunConflict, match="different run"):
        L.run_ladder(LadderSpec(**{**spec.__dict__, "pairs": ("a:a",)}), ex, run, log=quiet, planned=[])
    L.run_ladder(LadderSpec(**{**spec.__dict__, "widths": (8, 4)}), ex, run, log=quiet, planned=[])
    assert json.loads((run / "grid.json").read_text()) == {"scales": [0.5, 1.0], "widths": [4, 8]}


# ------------------------------------------------------------------------------------------------ hand-made rows
def _rows(values: dict, source: str = "a", target: str = "a", backbone: str = "siren") -> list[dict]:
    """{depth: [psnr per image]} → fit rows (seed 0; None = a diverged fit)."""
    out = []
    for d, ps in values.items():
        for i, p in enumerate(ps):
            rnd = d == "random"
            out.append({"kind": "fit", "key": f"{backbone}{source}{target}{d}{i}", "backbone": backbone,
                        "source": None if rnd else source, "target": target, "regime": "random" if rnd else "transfer",
                        "freeze": None if d in ("none", "random") else d, "image": f"img{i}", "seed": 0,
                        "psnr": 0.0 if p is None else p, "status": "diverged" if p is None else "ok", "shape": [8, 8]})
    return out


def test_summary_gain_and_interval_by_hand():
    r1 = _rows({"none": [30, 31, 32], 0: [31, 33, 32], 1: [29, 30, 30], "random": [20, 21, 22]})
    r1 += _rows({"none": [10, 10, 10], 0: [11, 11, 11]}, source="b", target="a")  # a pair the ladder did not name
    r2 = _rows({"none": [30, 30, 30, 30, 30], 0: [32, 32.5, 31.5, 32, None], 1: [31, 31, 31, 31, 31]})
    out = L.summarise_rungs([(Rung(0.5, 8), [("a", "a")], r1), (Rung(1.0, 8), [("a", "a")], r2)])
    assert [(r["pair"], r["scale"]) for r in out] == [("a:a", 0.5), ("a:a", 1.0)]
    a, b = out
    # rung 1: k* = 0 (mean 32 vs 29.67); d = (1, 2, 0): mean 1, s = 1, t_{0.975, 2} = 4.302652729911275
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert a["best_k"] == 0 and a["n"] == 3
    assert a["gain"] == pytest.approx(1.0) and a["gain_lo"] == pytest.approx(1 - half) and a["gain_hi"] == pytest.approx(1 + half)
    assert a["gain_lo"] == pytest.approx(-1.484137, abs=1e-6)
    assert a["none"] == pytest.approx(31.0) and a["none_std"] == pytest.approx(1.0) and a["n_none"] == 3
    assert a["best"] == pytest.approx(32.0) and a["random"] == pytest.approx(21.0) and a["random_std"] == pytest.approx(1.0)
    # k = 1 vs k* : d = (−2, −3, −2), mean −7/3, s = √(1/3): hi = −7/3 + 4.3027·(1/3) = −0.899 < 0 → not in the set
    assert a["best_set"] == [0]
    assert a["verdict"] == "inconclusive (n = 3 fits)" and a["target_size"] == "8x8"
    # rung 2: the diverged k = 0 fit is left out (n = 4); d = (2, 2.5, 1.5, 2): mean 2, s = √(1/6), t_{0.975, 3} = 3.182446
    half = 3.182446305284263 * math.sqrt(1 / 6) / 2
    assert b["n"] == 4 and b["best_k"] == 0
    assert (b["gain"], b["gain_lo"], b["gain_hi"]) == pytest.approx((2.0, 2 - half, 2 + half))
    assert b["gain_lo"] == pytest.approx(1.350386, abs=1e-6)
    assert b["verdict"] == "agrees" and b["best_set"] == [0] and math.isnan(b["random"])
    # held out: each image's depth chosen on the other images is k = 0 here too (worked out by hand for rung 1:
    # without img0, k0 (33+32)/2 = 32.5 > k1 30; without img1 31.5 > 29.5; without img2 32 > 29.5), so the held-out
    # gain equals the in-sample one; rung 2's diverged img4 fit has no k = 0 unit to score (n = 4)
    assert a["cf_picks"] == [0] and (a["gain_cf"], a["gain_cf_lo"], a["gain_cf_hi"], a["n_cf"]) == pytest.approx(
        (a["gain"], a["gain_lo"], a["gain_hi"], 3))
    assert b["cf_picks"] == [0] and b["n_cf"] == 4 and b["gain_cf"] == pytest.approx(2.0) and b["verdict_cf"] == "agrees"
    # the same numbers through inrlens.stats.mean_ci (the report's interval)
    from inrlens.stats import mean_ci

    assert mean_ci([1, 2, 0])[1:3] == pytest.approx((a["gain_lo"], a["gain_hi"]))
    # every pair found when no pair list is given
    assert {r["pair"] for r in L.summarise_rungs([(Rung(0.5, 8), None, r1)])} == {"a:a", "b:a"}


# ------------------------------------------------------------------------------------------------ files
def test_definition_file_equals_flags(sets, tmp_path):
    f = tmp_path / "ladder.toml"
    f.write_text(f"""pairs = ["a:a", "a:b"]
scales = [0.5]
widths = [8, 16]
backbones = ["siren"]
[data]
a = "{sets['a']}"
b = "{sets['b']}"
[base]
seeds = [0]
n_cohort = 2
[base.train]
steps = 20
[exec]
cluster = "debug"
""")
    spec, ex = L.resolve_ladder(f, LadderSpec(), ExecSpec())
    want = LadderSpec(data=(f"a={sets['a']}", f"b={sets['b']}"), pairs=("a:a", "a:b"), scales=(0.5,), widths=(8, 16),
                      backbones=("siren",), base=SweepSpec(seeds=(0,), n_cohort=2, train=TrainConfig(steps=20, lr=1e-4), lpips=False))
    assert spec == want and ex == ExecSpec(cluster="debug")
    # a nested table overrides single fields of the sweep's defaults (train.lr stays 1e-4); a flag that differs from
    # the default overrides the file, nested fields one by one
    flags = LadderSpec(widths=(4,), base=SweepSpec(lpips=False, train=dataclasses.replace(SweepSpec().train, lr=5e-4)))  # as tyro builds it
    spec2, _ = L.resolve_ladder(f, flags, ExecSpec(jobs=3))
    assert spec2.widths == (4,) and spec2.base.train.steps == 20 and spec2.base.train.lr == 5e-4 and spec2.base.n_cohort == 2
    f.write_text('pairs = ["a:a"]\nwhatever = 1\n')
    with pytest.raises(ValueError, match=r"ladder\.toml: .*whatever"):
        L.load_ladder_file(f)
    f.write_text('pairs = ["a:a"]\n[base]\nnet = {width = 3}\n')
    with pytest.raises(ValueError, match="--widths"):
        L.load_ladder_file(f)
