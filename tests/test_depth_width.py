"""The depth × width SAE study ([depth_width] of a reproduce preset) and the report's atom-semantics section:
validation before work, the stage's INRs and SAEs (checked against the checkpoints, the sweep's split and the
SAE rows), resume without refitting, the figure's plotted values and the table against the SAE rows, the
report sections from hand-made files, and the stage inside a tiny `inrlens reproduce` run."""

from __future__ import annotations

import contextlib
import json
import re

import numpy as np
import pytest

from inrlens.cli import main

PRESET = """
[datasets]
faces = "sample:faces"
[sweep]
backbones = ["siren", "ffmlp"]
depths = ["none"]
seeds = [0]
n_cohort = 3
n_test = 1
lpips = false
net = { width = 16, depth = 3, ff_features = 16 }
cohort_train = { steps = 5, target_psnr = 30.0, lr = 1e-3 }
train = { steps = 5, lr = 1e-3 }
images = { size = 16, square = true, channels = "gray" }
[exec]
cluster = "debug"
jobs = 1
threads = 1
device = "cpu"
[sae]
n = 24
k = 3
steps = 15
batch = 256
[study]
single_steps = 10
atlas_top = 3
ablate_top = 1
ablate_all_layers = true
[depth_width]
depths = [2, 3]
widths = [8, 16]
expansion = 2
single_steps = 15
"""


def _preset(tmp_path, text=PRESET, replace=None):
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    p = tmp_path / "dw.toml"
    p.write_text(text)
    return p


@contextlib.contextmanager
def _bar(total, desc):
    class Bar:
        n = 0

        def update(self, k=1):
            self.n += k

    b = Bar()
    yield b
    assert b.n == total, (desc, b.n, total)


# ------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("lines,needles", [
    ({"depths = [2, 3]": "depths = [0, 3]"}, ["[depth_width] depths", ">= 1"]),
    ({"widths = [8, 16]": "widths = [8, 8]"}, ["[depth_width] widths", "distinct"]),
    ({"widths = [8, 16]": 'widths = ["a"]'}, ["[depth_width] widths[0]", "expected an integer"]),
    ({"expansion = 2": "expansion = 2\nbackbones = [\"nope\"]"}, ["[depth_width]", "unknown backbone 'nope'"]),
    ({"expansion = 2": "expansion = 2\nmember = 3"}, ["[depth_width] member 3", "outside 0..2"]),
    ({"expansion = 2": "expansion = 2\nsource = \"x\""}, ["[depth_width] source 'x'", "not a dataset"]),
    ({"expansion = 2": "expansion = 1", "widths = [8, 16]": "widths = [2, 16]"}, ["[depth_width] width 2", "n = expansion × width = 2",
                                                                                 "k=3 exceeds"]),
    ({"expansion = 2": "expansion = 2\nlayers = [1]"}, ["unknown [depth_width] field(s) layers"]),
    ({"expansion = 2": "expansion = 2\nx = \"log\""}, ["[depth_width] x", "'log'"]),
])
def test_bad_depth_width_table_fails_before_any_work(tmp_path, capsys, lines, needles):
    p = _preset(tmp_path, replace=lines)
    rc = main(["reproduce", "--preset", str(p), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("inrlens: error: preset dw: "), err
    for n in needles:
        assert n in err[0], (n, err[0])
    assert not (tmp_path / "run").exists()


def test_table_is_optional_and_filled_from_the_preset(tmp_path):
    from inrlens.commands.reproduce import load_preset, resolve_preset
    from inrlens.depth_width import DepthWidthConfig

    for name in ("demo", "paper"):
        assert load_preset(name)[1].depth_width is None  # off by default
    plan = resolve_preset(str(_preset(tmp_path)))
    assert plan.depth_width == DepthWidthConfig(depths=(2, 3), widths=(8, 16), backbones=("siren", "ffmlp"), source="faces",
                                                member=0, single_steps=15, expansion=2)
    p2 = _preset(tmp_path, replace={"single_steps = 15": "backbones = [\"siren\"]\nmember = 2"})
    dw = resolve_preset(str(p2)).depth_width
    assert dw.backbones == ("siren",) and dw.member == 2 and dw.single_steps == 10  # [study] single_steps


# ------------------------------------------------------------------------------------------- the stage
def _capture_figures(monkeypatch):
    """Record every line plotted in figures saved through report.sae_figures, per axes."""
    from inrlens.report import sae_figures

    seen = []
    orig = sae_figures._save

    def save(fig, path):
        seen.append({"path": path, "axes": [[(ln.get_label(), list(ln.get_xdata()), list(ln.get_ydata()), ln.get_linestyle(),
                                              ln.get_color()) for ln in ax.get_lines()] for ax in fig.axes],
                     "titles": [ax.get_title() for ax in fig.axes]})
        return orig(fig, path)

    monkeypatch.setattr(sae_figures, "_save", save)
    return seen


def test_stage_runs_resumes_and_draws_the_sae_rows(tmp_path, monkeypatch):
    from inrlens.commands.reproduce import resolve_preset, stage_depth_width
    from inrlens.data import resolve, split
    from inrlens.depth_width import DIR, FIGURE_NAME, TABLE_NAME, cells
    from inrlens.report.sae_figures import DEPTH_WIDTH_ROWS
    from inrlens.store import load_stack, read_rows

    plan = resolve_preset(str(_preset(tmp_path)))
    run = tmp_path / "run"
    figs = _capture_figures(monkeypatch)
    rows = stage_depth_width(plan, run, _bar)
    root = run / DIR
    cs = cells(plan.depth_width, root)
    assert [c.name for c in cs] == [f"{b}_L{d}_w{w}" for b in ("siren", "ffmlp") for d in (2, 3) for w in (8, 16)]
    assert len(rows) == 2 * (2 + 3) * 2  # backbones × Σ layers over depths × widths

    # the image: cohort image 0 of faces as the sweep splits the dataset (an independent split here)
    cohort, _ = split(resolve("sample:faces", plan.spec.images), 3, 1, 0)
    for c in cs:
        stack, meta = load_stack(c.inr)
        assert (stack.cfg.backbone, stack.cfg.depth, stack.cfg.width) == (c.backbone, c.depth, c.width)
        assert meta["members"] == [f"{cohort[0].name}@0"] and meta["regime"] == "single"
        sae_rows = read_rows(c.sae / "results.jsonl")
        assert sorted(r["layer"] for r in sae_rows) == list(range(c.depth))
        assert all(r["n"] == 2 * c.width and r["k"] == 3 and r["width"] == c.width for r in sae_rows)
        mine = [r for r in rows if r["cell"] == c.name]
        for r in mine:
            ref = next(s for s in sae_rows if s["layer"] == r["layer"])
            for key in ("psnr_sub", "r2", "alive_pct", "dead_pct", "rho", "psnr_inr"):
                assert r[key] == ref[key]
            assert r["rel_depth"] == pytest.approx(r["layer"] / (c.depth - 1))
        assert (read_rows(c.inr / "results.jsonl")[0]["train"]["steps"]) == 15

    # the table: one line per SAE row, numbers as the rows have them (rounded)
    table = (root / TABLE_NAME).read_text().splitlines()
    assert len(table) == 2 + len(rows)
    for line, r in zip(table[2:], rows):
        cells_ = [x.strip() for x in line.strip("|").split("|")]
        assert cells_[:4] == [r["backbone"], str(r["depth"]), str(r["width"]), str(r["layer"])]
        assert [int(cells_[5]), int(cells_[6])] == [r["n"], r["k"]]
        cols = ((4, "rel_depth", 2), (8, "psnr_sub", 2), (9, "r2", 3), (10, "alive_pct", 1), (11, "dead_pct", 1), (12, "rho", 3))
        for col, key, d in cols:
            assert float(cells_[col]) == pytest.approx(float(r[key]), abs=0.51 * 10 ** -d), (key, line)

    # the figure: rows = diagnostics + ρ, one column per backbone, one line per (depth, width), x = ℓ/(L−1)
    assert (root / FIGURE_NAME).is_file()
    fig = next(f for f in figs if f["path"] == root / FIGURE_NAME)
    n_rows, n_cols = len(DEPTH_WIDTH_ROWS), 2
    assert len(fig["axes"]) == n_rows * n_cols and fig["titles"][:2] == ["siren", "ffmlp"]
    for i, (key, _) in enumerate(DEPTH_WIDTH_ROWS):
        for j, b in enumerate(("siren", "ffmlp")):
            lines = fig["axes"][i * n_cols + j]
            assert len(lines) == 4
            for label, xs, ys, style, _colour in lines:
                d, w = map(int, re.fullmatch(r"L=(\d+), width (\d+)", label).groups())
                ref = sorted((r for r in rows if r["backbone"] == b and r["depth"] == d and r["width"] == w), key=lambda r: r["layer"])
                assert xs == pytest.approx([r["layer"] / (d - 1) for r in ref])
                assert ys == pytest.approx([float(r[key]) for r in ref])
                assert style == {2: "-", 3: "--"}[d]
    colours = {(ln[0], ln[4]) for ax in fig["axes"] for ln in ax}
    assert len({c for _, c in colours}) == 2  # colour = width

    # resume: nothing refitted or retrained, no new rows, the same outputs
    import inrlens.probes.sae as sae_mod
    import inrlens.workflows as wf

    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.safetensors")}
    n_rows_files = {p: len(read_rows(p)) for p in root.rglob("results.jsonl")}
    monkeypatch.setattr(wf, "fit_single", lambda *a, **k: pytest.fail("refitted an INR on resume"))
    monkeypatch.setattr(sae_mod, "train_sae", lambda *a, **k: pytest.fail("retrained an SAE on resume"))
    again = stage_depth_width(plan, run, _bar)
    assert again == rows
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.safetensors")} == stamps
    assert {p: len(read_rows(p)) for p in root.rglob("results.jsonl")} == n_rows_files


# ------------------------------------------------------------------------------------------- report sections
def _hand_made_semantics(tmp_path):
    """Two SAE run folders written by hand: single-siren (RGB, two layers) and cohort-ffmlp (MRI: all + brain)."""
    runs = []
    specs = {
        "single-siren": {"regime": "single", "backbone": "siren", "features": ["luminance", "red", "green", "blue", "edges", "frequency"],
                         "layers": {0: {"luminance": (0.5, 3), "edges": (0.25, 1)}, 1: {"luminance": (0.2, 0), "edges": (0.75, 4)}}},
        "cohort-ffmlp": {"regime": "cohort", "backbone": "ffmlp", "features": ["luminance", "edges", "gm", "wm"],
                         "layers": {2: {"gm": (0.625, 2), "wm": (0.125, 2)}}, "brain": {2: {"wm": (0.375, 4)}}},
    }
    for cond, sp in specs.items():
        run = tmp_path / cond
        (run / "saes").mkdir(parents=True)
        (run / "context.json").write_text(json.dumps({"condition": cond, "regime": sp["regime"], "backbone": sp["backbone"],
                                                      "image": "img", "shape": [8, 8]}))
        for ell, vals in sp["layers"].items():
            def rec(v, feats=sp["features"]):
                summ = {f: {"mean_abs_r": v.get(f, (0.0, 0))[0], "top_count": v.get(f, (0.0, 0))[1]} for f in feats}
                summ["(none)"] = {"mean_abs_r": None, "top_count": 0}
                return {"features": feats, "atoms": [0, 1, 2, 3], "r": [], "top": [], "top_r": [], "summary": summ}
            records = {"all": rec(vals)}
            if "brain" in sp:
                records["brain"] = rec(sp["brain"][ell])
            d = run / "saes" / f"L{ell}_n16_k2"
            d.mkdir()
            (d / "semantics.json").write_text(json.dumps({"records": records}))
        runs.append(run)
    return runs


def test_semantics_section_from_hand_made_files(tmp_path, monkeypatch):
    from inrlens.probes.semantics import read_semantics
    from inrlens.report import document
    from inrlens.report.sae_figures import semantics_layers

    runs = _hand_made_semantics(tmp_path)
    rows = read_semantics(runs)
    assert [(r["condition"], r["layer"], r["where"]) for r in rows] == [
        ("single-siren", 0, "all"), ("single-siren", 1, "all"), ("cohort-ffmlp", 2, "all"), ("cohort-ffmlp", 2, "brain")]
    figs = _capture_figures(monkeypatch)
    fig_path = semantics_layers(rows, tmp_path / "semantics.png")
    md, _ = document.build(tmp_path, {"preset": "t"}, [], [], [], semantics=rows, semantics_figure=fig_path)
    sec = md.split("## Atom semantics")[1]
    assert "spatially smooth" in sec and "inflated" in sec and "baseline" in sec
    table = [ln for ln in sec.split("### Inside the brain")[0].splitlines() if ln.startswith("|")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    assert head == ["condition", "backbone", "regime", "layer", "n", "k", "atoms", "most often top", "luminance", "red", "green", "blue",
                    "edges", "frequency", "gm", "wm"]
    body = {(r[0], r[3]): r for r in ([c.strip() for c in ln.strip("|").split("|")] for ln in table[2:])}
    assert list(body) == [("cohort-ffmlp", "2"), ("single-siren", "0"), ("single-siren", "1")]
    s0 = dict(zip(head, body[("single-siren", "0")]))
    assert (s0["backbone"], s0["regime"], s0["n"], s0["k"], s0["atoms"]) == ("siren", "single", "16", "2", "4")
    assert s0["luminance"] == "0.50 (3)" and s0["edges"] == "0.25 (1)" and s0["red"] == "0.00 (0)" and s0["gm"] == "—"
    assert s0["most often top"] == "luminance (3)" and dict(zip(head, body[("single-siren", "1")]))["most often top"] == "edges (4)"
    c2 = dict(zip(head, body[("cohort-ffmlp", "2")]))
    assert c2["gm"] == "0.62 (2)" and c2["wm"] == "0.12 (2)" and c2["red"] == "—"
    assert c2["most often top"] == "gm (2)"  # a tie goes to the first feature in the file's order
    brain = [ln for ln in sec.split("### Inside the brain")[1].splitlines() if ln.startswith("| cohort-ffmlp")]
    assert len(brain) == 1 and "0.38 (4)" in brain[0] and "wm (4)" in brain[0]
    assert "![semantics](semantics.png)" in sec
    # the figure: one panel per condition, mean |r| per layer per feature (brain dashed)
    fig = figs[-1]
    assert fig["titles"][:2] == ["cohort-ffmlp", "single-siren"]
    siren = {ln[0]: (ln[1], ln[2]) for ln in fig["axes"][1]}
    assert siren["luminance"] == ([0, 1], [0.5, 0.2]) and siren["edges"] == ([0, 1], [0.25, 0.75])
    dashed = [ln for ln in fig["axes"][0] if ln[3] == "--"]
    assert any(ln[2] == [0.375] for ln in dashed) and all(ln[1] == [2] for ln in fig["axes"][0])
    # without semantics rows the section says so; without the argument there is no section
    assert "No atom semantics" in document.build(tmp_path, {}, [], [], [], semantics=[])[0]
    assert "## Atom semantics" not in document.build(tmp_path, {}, [], [], [])[0]


# ------------------------------------------------------------------------------------------- end to end
def test_reproduce_runs_the_stage_and_reports_both_sections(tmp_path, capsys):
    from inrlens.depth_width import DIR, FIGURE_NAME
    from inrlens.store import read_rows

    p = _preset(tmp_path, replace={'backbones = ["siren", "ffmlp"]': 'backbones = ["siren"]', "widths = [8, 16]": "widths = [8]"})
    run = tmp_path / "run"
    assert main(["reproduce", "--preset", str(p), "--out", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "## Atom semantics" in md and "## Depth × width" in md and f"![depth × width]({DIR}/{FIGURE_NAME})" in md
    assert "n = 2 × width atoms" in md
    dw_lines = [ln for ln in md.split("## Depth × width")[1].splitlines() if ln.startswith("| siren |")]
    assert len(dw_lines) == 2 + 3  # L = 2 and L = 3, width 8
    assert (run / "sae" / "semantics.png").is_file()
    assert all((run / "sae" / c / "saes" / f"L{ell}_n24_k3" / "semantics.json").is_file()
               for c in ("single-siren", "cohort-siren") for ell in range(3))
    conf = json.loads((run / "run.json").read_text())
    assert conf["depth_width"]["widths"] == [8] and conf["depth_width"]["source"] == "faces"
    stamps = {q: q.stat().st_mtime_ns for q in (run / DIR).rglob("*.safetensors")}
    n = {q: len(read_rows(q)) for q in (run / DIR).rglob("results.jsonl")}
    assert main(["reproduce", "--preset", str(p), "--out", str(run), "--resume"]) == 0
    assert {q: q.stat().st_mtime_ns for q in (run / DIR).rglob("*.safetensors")} == stamps
    assert {q: len(read_rows(q)) for q in (run / DIR).rglob("results.jsonl")} == n
    inv = json.loads((run / "timings.json").read_text())["invocations"]
    assert all("depth_width" in i for i in inv)
    assert np.isfinite([r["psnr_sub"] for q in (run / DIR).rglob("sae/results.jsonl") for r in read_rows(q)]).all()
