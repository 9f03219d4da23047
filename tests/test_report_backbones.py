"""The report with any number of backbones: tables and figures in registry order, the "Beyond the paper" section's
measurements and verdicts, and noise-trained vs image-trained encoders (hand-made rows, hand-computed numbers)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from inrlens.report import document, figures, tables

T975_7 = 2.3646242510102993  # Student-t 0.975 quantile, 7 degrees of freedom (8 matched fits)
IMAGES, SEEDS = 4, 2
UNITS = [(i, s) for i in range(IMAGES) for s in range(SEEDS)]
E_SMALL = [0.1, -0.1, 0.2, -0.2, 0.05, -0.05, 0.15, -0.15]  # per-unit noise, mean 0
E_LARGE = [3.0, -3.0, 2.0, -2.0, 1.0, -1.0, 0.5, -0.5]

# PSNR offsets per depth, added to 30 + image + 0.1·seed (the unit's own level, which paired differences cancel);
# a list gives one offset per unit. Depth 3 nets: k = 0, 1, 2 (L − 1 = 2).
PATTERNS = {
    "siren": {"none": 0.0, 0: 1.0, 1: [2.0 + e for e in E_SMALL], 2: -6.0},                 # plateau, then collapse
    "ffmlp": {"none": 0.0, 0: 0.5, 1: [-4.0 + e for e in E_SMALL], 2: -8.0},                # loses per frozen layer
    "gauss": {"none": 0.0, 0: 1.0, 1: [1.2 + e for e in E_SMALL], 2: -5.0},                 # SIREN-like plateau
    "hashgrid": {"none": 0.0, 0: 0.0, 1: [-0.5 + e for e in E_LARGE], 2: [-1.0 + e for e in E_LARGE]},  # undecided
}


def _off(v, j):
    return v[j] if isinstance(v, list) else v


def fit(b, src, tgt, d, psnr, i, s):
    regime = "random" if d == "random" else "transfer"
    return {"kind": "fit", "key": f"{b}|{src}|{tgt}|{d}|{i}|{s}", "backbone": b, "source": None if regime == "random" else src,
            "target": tgt, "regime": regime, "freeze": d if isinstance(d, int) else None, "depth": d, "image": f"im{i}", "seed": s,
            "status": "ok", "psnr": psnr, "ssim": 0.5, "lpips": 0.2}


def cohort(b, src, k_w=1, path=None):
    sr_w = [1.0, 1.0, 1.0]
    sr_w[k_w] = 5.0
    row = {"kind": "cohort", "key": f"c{b}{src}", "source": src, "backbone": b, "sr_w": sr_w, "sr_h": [3.0, 1.0, 1.0], "k_w": k_w,
           "k_h": 0, "grid": [16, 16], "psnr_mean": 31.0, "steps_run": 10}
    if path is not None:
        row["source_path"] = path
    return row


def four_backbone_rows() -> list[dict]:
    """One source A → target T per backbone, listed out of registry order (hashgrid first)."""
    rows = []
    for b in ("hashgrid", "gauss", "ffmlp", "siren"):
        for d, v in PATTERNS[b].items():
            rows += [fit(b, "A", "T", d, 30.0 + i + 0.1 * s + _off(v, j), i, s) for j, (i, s) in enumerate(UNITS)]
        rows += [fit(b, None, "T", "random", 20.0 + i, i, s) for i, s in UNITS]
        rows.append(cohort(b, "A", k_w=1))
    return rows


def hand_ci(diffs):
    d = np.asarray(diffs, dtype=float)
    half = T975_7 * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def fmt(m, lo, hi, n=8, d=2):
    return f"{m:+.{d}f} [{lo:.{d}f}, {hi:.{d}f}] (n={n})"


ORDER = ["siren", "ffmlp", "gauss", "hashgrid"]


# ------------------------------------------------------------------------------------------------ tables
def test_tables_list_every_backbone_in_registry_order():
    s = tables.summarise(four_backbone_rows())
    assert s["backbones"] == ORDER
    assert [r["backbone"] for r in s["table1"]] == ORDER
    assert [p["backbone"] for p in s["predictions"]] == ORDER
    assert [r["backbone"] for r in s["regime"]] == ORDER
    assert list(s["averages"]) == ORDER

    def first_col(md, prefix="| "):
        return [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith(prefix) and "---" not in ln][1:]

    t1 = tables.table1(s)
    assert [c for c in first_col(t1)][:4] == ORDER and first_col(t1)[4:] == ORDER  # pairs, then the means over pairs
    assert first_col(tables.regime_table(s)) == ORDER
    assert [ln.split("|")[2].strip() for ln in tables.predictions_table(s).splitlines() if ln.startswith("| A |")] == ORDER
    caps = [ln.split(":")[0] for ln in tables.combo_tables(s).splitlines() if ": A → T" in ln]
    assert caps == ORDER
    # the section's compact table: every backbone, registry order, the paper's two marked as reference
    md = "\n".join(document.beyond_section(s, [], []))
    rows = [ln.split("|")[1].strip() for ln in md.split("| backbone | best-k set")[1].splitlines()[2:] if ln.startswith("|")]
    assert rows == ["siren (paper's backbone)", "ffmlp (paper's backbone)", "gauss", "hashgrid"]
    assert md.index("### gauss") < md.index("### hashgrid") and "### siren" not in md and "### ffmlp" not in md
    # a backbone missing from a run is simply absent
    s3 = tables.summarise([r for r in four_backbone_rows() if r["backbone"] != "ffmlp"])
    assert s3["backbones"] == ["siren", "gauss", "hashgrid"] and "ffmlp" not in tables.table1(s3)


def test_paper_findings_unchanged_by_other_backbones():
    """F1–F5 stay about SIREN and FFMLP: extra backbones change neither their text nor their verdicts."""
    rows = four_backbone_rows()
    only = [r for r in rows if r["backbone"] in ("siren", "ffmlp")]
    a, b = document.findings(tables.summarise(rows), [], []), document.findings(tables.summarise(only), [], [])
    assert [(f.measured, f.verdict) for f in a[:2]] == [(f.measured, f.verdict) for f in b[:2]]
    assert a[2].verdict == b[2].verdict
    assert "gauss" not in a[0].measured.split("ffmlp")[0]  # F1 lists siren and ffmlp; extra ones after them at most


# ------------------------------------------------------------------------------------------------ verdicts
def test_beyond_section_plateau_and_inconclusive_verdicts(tmp_path):
    s = tables.summarise(four_backbone_rows())
    md = "\n".join(document.beyond_section(s, [], []))
    assert md.startswith("## Beyond the paper: other backbones")
    gauss = md.split("### gauss")[1].split("### hashgrid")[0]
    hg = md.split("### hashgrid")[1]
    # gauss: per fit, k=1 − k=0 = 0.2 + e (k = 0 exact) → slope over {0, 1} = +0.20 with the t interval of 0.2 + e
    m, lo, hi = hand_ci([0.2 + e for e in E_SMALL])
    assert lo > -0.5
    assert f"- PSNR change per extra frozen layer over k ∈ {{0, 1}}: {fmt(m, lo, hi)} dB → SIREN's plateau" in gauss
    # gain of k* = argmax sr(W) = 1 over no freeze: 1.2 + e
    gain = fmt(*hand_ci([1.2 + e for e in E_SMALL]))
    assert f"- gain of k* = argmax sr(W) over no freeze: {gain} dB → matches or beats no freeze" in gauss
    # collapse: k = 2 − k = 1 = −5 − (1.2 + e) = −6.2 − e
    assert f"PSNR(k = 2) − PSNR(k = 1) = {fmt(*hand_ci([-6.2 - e for e in E_SMALL]))} dB → collapses" in gauss
    assert "- best k: per pair A→T {1}; over all pairs best k = 1, best k ∈ {1}" in gauss
    assert "argmax sr(W) agrees in 1/1" in gauss
    assert ("**gauss: freeze depth — SIREN's plateau; atoms — not measured; ablations — not measured → overall: resembles SIREN.**"
            in gauss)
    # hashgrid: k=1 − k=0 = −0.5 + E_LARGE, mean −0.5: the interval straddles −0.5 dB → inconclusive, not a pattern
    m, lo, hi = hand_ci([-0.5 + e for e in E_LARGE])
    assert lo < -0.5 < hi
    assert f"- PSNR change per extra frozen layer over k ∈ {{0, 1}}: {fmt(m, lo, hi)} dB → inconclusive (n = 8 fits)" in hg
    assert f"- gain of k* = argmax sr(W) over no freeze: {fmt(m, lo, hi)} dB → inconclusive (n = 8 fits)" in hg
    assert "- best k: per pair A→T {0, 1, 2}" in hg  # nothing significantly below the best
    assert ("**hashgrid: freeze depth — inconclusive (n = 8 fits); atoms — not measured; ablations — not measured → overall: "
            "undecided (no part decided).**") in hg
    # the compact table carries the same intervals
    line = next(ln for ln in md.splitlines() if ln.startswith("| gauss |"))
    assert fmt(*hand_ci([1.2 + e for e in E_SMALL])) in line and line.rstrip(" |").endswith("SIREN")
    line = next(ln for ln in md.splitlines() if ln.startswith("| siren (paper's backbone) |"))
    assert line.rstrip(" |").endswith("freeze depth: SIREN's plateau")
    line = next(ln for ln in md.splitlines() if ln.startswith("| ffmlp (paper's backbone) |"))
    assert line.rstrip(" |").endswith("freeze depth: FFMLP's loss per frozen layer")
    # the report places the section after the findings; a SIREN/FFMLP-only run has none
    full, _ = document.build(tmp_path, {"preset": "t"}, four_backbone_rows(), [], [])
    assert full.index("## Findings") < full.index("## Beyond the paper: other backbones") < full.index("## Freeze sweep")
    only, _ = document.build(tmp_path, {}, [r for r in four_backbone_rows() if r["backbone"] in ("siren", "ffmlp")], [], [])
    assert "Beyond the paper" not in only


def _sae(cond, b, layer, rho, dead):
    return {"condition": cond, "backbone": b, "layer": layer, "rho": rho, "dead_pct": dead, "r2": 0.9}


def test_beyond_section_sae_and_ablation_parts():
    sae = []
    for b, rhos, deads in (("siren", [0.10, 0.12, 0.11, 0.09], [2, 3, 1, 2]), ("ffmlp", [0.60, 0.55, 0.62, 0.58], [20, 25, 22, 18]),
                           ("gauss", [0.11, 0.13, 0.10, 0.12], [1, 2, 3, 2]), ("hashgrid", [0.30, 0.32, 0.35, 0.31], [5, 6, 7, 8])):
        sae += [_sae(f"cohort-{b}", b, 1 + j % 2, r, d) for j, (r, d) in enumerate(zip(rhos, deads))]
        sae.append(_sae(f"cohort-{b}", b, 0, 0.99, 99.0))  # layer 0 is listed per layer but left out of the means
    abl = []
    for b, regs in (("siren", [0.05, 0.08, 0.06]), ("ffmlp", [0.9, 0.8, 0.85]), ("gauss", [0.07, 0.05, 0.06]),
                    ("hashgrid", [0.9, 0.1, 0.5])):
        abl += [{"condition": f"cohort-{b}", "layer": 1, "atom": j, "psnr_drop": 1.0 + j, "region_frac": g, "locality": 1.0}
                for j, g in enumerate(regs)]  # no backbone field: taken from the condition's SAE rows / name
    ms = {m["backbone"]: m for m in document.beyond_measures(tables.summarise(four_backbone_rows()), sae, abl)}
    assert list(ms) == ORDER
    g, h = ms["gauss"], ms["hashgrid"]
    assert g["sae_layers"][1] == (pytest.approx((0.11 + 0.10) / 2), pytest.approx(2.0), 2)
    assert g["sae_layers"][0] == (pytest.approx(0.99), pytest.approx(99.0), 1)
    assert g["rho"] == pytest.approx(np.mean([0.11, 0.13, 0.10, 0.12])) and g["n_sae"] == 4
    from inrlens.stats import welch_ci

    assert g["rho_vs"]["ffmlp"] == pytest.approx(welch_ci([0.11, 0.13, 0.10, 0.12], [0.60, 0.55, 0.62, 0.58]))
    # gauss: ρ well below FFMLP's, not above SIREN's → SIREN's localised atoms; regions likewise → SIREN's local errors
    assert g["like"] == {"freeze": "SIREN", "atoms": "SIREN", "ablations": "SIREN"} and g["resembles"] == "SIREN"
    # hashgrid: ρ between SIREN's and FFMLP's, both significant → neither; its regions are too spread to decide
    assert h["like"]["atoms"] == "neither" and h["like"]["ablations"].startswith("inconclusive")
    assert h["resembles"] == "neither"
    md = "\n".join(document.backbone_text(h))
    assert "layer 1: ρ 0.325, dead 6.0 % (2 SAEs)" in md and "atoms — neither (between SIREN's and FFMLP's)" in md
    assert "→ overall: neither (its decided parts differ)" in md
    assert "- ablations: 3 ablated atoms, largest drop 3.00 dB, mean drop 2.00 dB, mean firing region 50.0 %" in md


# ------------------------------------------------------------------------------------------------ figures
def _capture(monkeypatch, module):
    drawn = []
    save = module._save
    monkeypatch.setattr(module, "_save", lambda fig, stem: (drawn.append(fig), save(fig, stem))[1])
    return drawn


def test_overview_figure_one_panel_per_backbone(tmp_path, monkeypatch):
    drawn = _capture(monkeypatch, figures)
    s = tables.summarise(four_backbone_rows())
    paths = figures.freeze_backbones(s, tmp_path)
    assert [p.name for p in paths] == ["freeze_backbones.png", "freeze_backbones.pdf"]
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ORDER
    for ax, b in zip(panels, ORDER):
        lines = [ln for ln in ax.get_lines() if ln.get_label() == "A"]
        assert len(lines) == 1
        want = [np.mean([_off(PATTERNS[b][k], j) - 0.0 for j in range(len(UNITS))]) for k in (0, 1, 2)]
        assert list(lines[0].get_xdata()) == [0, 1, 2] and list(lines[0].get_ydata()) == pytest.approx(want)


def test_write_report_writes_every_backbone(tmp_path):
    from inrlens.report import write_report
    from inrlens.store import append_row

    res = tmp_path / "results"
    res.mkdir()
    for r in four_backbone_rows():
        append_row(res / "rows.jsonl", r)
    names = {p.name for p in write_report(tmp_path, tmp_path / "rep")}
    for b in ORDER:
        assert {f"freeze_sweep_{b}.png", f"stable_rank_{b}.png"} <= names
    assert "freeze_backbones.png" in names and "noise_vs_image.md" not in names
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["backbones"] == ORDER


def test_report_figures_in_registry_order(tmp_path):
    """build() lists the freeze-study figures by kind, backbones in registry order (not alphabetical)."""
    figs = [tmp_path / f"{k}_{b}.png" for k in ("freeze_sweep", "stable_rank") for b in sorted(ORDER)] + [tmp_path / "freeze_backbones.png"]
    md, _ = document.build(tmp_path, {}, four_backbone_rows(), [], [], figures=figs)
    stems = re.findall(r"!\[([a-z_]+)\]", md)
    assert stems == ["freeze_backbones"] + [f"freeze_sweep_{b}" for b in ORDER] + [f"stable_rank_{b}" for b in ORDER]


def test_sae_figures_colour_by_backbone_in_registry_order(tmp_path, monkeypatch):
    from inrlens.report import sae_figures

    drawn = _capture(monkeypatch, sae_figures)
    rows = []
    for cond in ("single-hashgrid", "cohort-gauss", "single-ffmlp", "cohort-siren", "single-siren"):
        for ell in range(2):
            rows.append({"condition": cond, "layer": ell, "alive_pct": 50.0 + ell, "rho": 0.1, "psnr_sub": 30.0, "r2": 0.9,
                         "regime": cond.split("-")[0]})
    sae_figures.sae_stats(rows, tmp_path / "stats.png")
    ax = drawn[-1].axes[0]
    got = [(ln.get_label(), ln.get_linestyle(), ln.get_color()) for ln in ax.get_lines()]
    assert [g[0] for g in got] == ["cohort-siren", "single-siren", "single-ffmlp", "cohort-gauss", "single-hashgrid"]
    assert [g[1] for g in got] == ["--", "-", "-", "--", "-"]
    for label, _style, colour in got:
        assert colour == figures.backbone_colour(label.split("-")[1])
    assert len({figures.backbone_colour(b) for b in ORDER}) == 4
    # depth × width: one column per backbone, registry order whatever the rows' order
    dw = [{"backbone": b, "depth": 2, "width": 8, "layer": ell, "psnr_sub": 30.0, "r2": 0.9, "alive_pct": 50.0, "dead_pct": 1.0,
           "rho": 0.2} for b in ("hashgrid", "ffmlp", "siren", "gauss") for ell in range(2)]
    sae_figures.depth_width(dw, tmp_path / "dw.png")
    assert [ax.get_title() for ax in drawn[-1].axes if ax.get_title()] == ORDER


# ------------------------------------------------------------------------------------------------ noise sources
F_NOISE = [0.4, -0.3, 0.1, 0.6, -0.2, 0.0, 0.3, -0.5]
G_NOISE = [0.2, 0.1, -0.4, 0.3, 0.0, -0.1, 0.5, -0.2]


def noise_rows(with_path=True) -> list[dict]:
    """gauss: image source 'img' (best k = 1) and noise source 'nz' (best k = 0), one target T, 4 images × 2 seeds."""
    lv = {("img", "none"): [30.0] * 8, ("img", 0): [31.0] * 8, ("img", 1): [32.0 + e for e in E_SMALL],
          ("nz", "none"): [29.0 + f for f in F_NOISE], ("nz", 0): [30.5 + g for g in G_NOISE], ("nz", 1): [29.0] * 8}
    rows = []
    for (src, d), vals in lv.items():
        rows += [fit("gauss", src, "T", d, v + i + 0.1 * s, i, s) for v, (i, s) in zip(vals, UNITS)]
    rows += [cohort("gauss", "img", 1, "/data/faces" if with_path else None), cohort("gauss", "nz", 0, "noise:pink" if with_path else None)]
    return rows


def test_noise_vs_image_against_hand_computed_paired_differences(tmp_path):
    s = tables.summarise(noise_rows())
    assert s["noise_sources"] == ["nz"]
    (c,) = s["noise_vs_image"]
    got = (c["backbone"], c["target"], c["noise_source"], c["image_source"], c["k_noise"], c["k_image"])
    assert got == ("gauss", "T", "nz", "img", 0, 1)
    # no freeze: (29 + f) − 30 per (image, seed); best k: nz at k = 0 (30.5 + g) − img at k = 1 (32 + e)
    none = hand_ci([-1.0 + f for f in F_NOISE])
    best = hand_ci([30.5 + g - 32.0 - e for g, e in zip(G_NOISE, E_SMALL)])
    assert (c["none"]["mean"], c["none"]["lo"], c["none"]["hi"], c["none"]["n"]) == (*map(pytest.approx, none), 8)
    assert (c["best"]["mean"], c["best"]["lo"], c["best"]["hi"], c["best"]["n"]) == (*map(pytest.approx, best), 8)
    assert none[2] < 0 and best[2] < 0  # both intervals below 0 → the image-trained encoder is better
    assert c["none_word"] == "image-trained better" and c["best_word"] == "image-trained better"
    # Table 1 marks the noise source; the noise table and the section state the same numbers
    t1 = tables.table1(s)
    assert "| gauss | nz (noise) → T |" in t1 and "| gauss | img → T |" in t1 and "noise: dataset" in t1
    nt = tables.noise_table(s)
    assert f"| gauss | T | nz | img | {fmt(*none)} | image-trained better | 0 / 1 | {fmt(*best)} | image-trained better |" in nt
    md = "\n".join(document.beyond_section(s, [], []))
    assert "### Noise-trained vs image-trained encoders" in md and "best k ∈" in md
    assert f"gauss, nz (noise) vs img → T: no freeze {fmt(*none)} dB → image-trained better" in md
    assert "per pair img→T {1}, nz (noise)→T {0}" in md
    # a run with noise but no image source of that backbone and target: said so
    only = tables.summarise([r for r in noise_rows() if r.get("source") != "img"])
    assert only["noise_vs_image"] == [] and tables.noise_table(only) == ""
    assert "have no image-trained source" in "\n".join(document.noise_text(only))
    # an inconclusive difference: shift the noise source so the no-freeze difference has mean 0
    rows = [dict(r, psnr=r["psnr"] + 1.0) if r["kind"] == "fit" and r["source"] == "nz" and r["freeze"] is None else r
            for r in noise_rows()]
    c2 = tables.summarise(rows)["noise_vs_image"][0]
    assert c2["none"]["mean"] == pytest.approx(np.mean(F_NOISE)) and c2["none_word"] == "inconclusive (n = 8 fits)"


def test_noise_sources_from_run_json_or_by_name(tmp_path):
    from inrlens.cli import main
    from inrlens.report import write_report
    from inrlens.store import append_row

    plain = noise_rows(with_path=False)  # rows that do not record the source's path
    assert tables.summarise(plain)["noise_sources"] == [] and "(noise)" not in tables.table1(tables.summarise(plain))
    assert tables.summarise(plain, noise=["nz"])["noise_sources"] == ["nz"]
    sweep = tmp_path / "sweep"
    (sweep / "results").mkdir(parents=True)
    for r in plain:
        append_row(sweep / "results" / "rows.jsonl", r)
    written = {p.name for p in write_report(sweep, tmp_path / "r0")}
    assert "noise_vs_image.md" not in written
    (sweep / "run.json").write_text(json.dumps({"cmd": "sweep", "spec": {"data": ["img=/data/faces", "nz=noise:pink:n=4"]}}))
    assert tables.sweep_noise_sources(sweep) == ["nz"]
    written = {p.name for p in write_report(sweep, tmp_path / "r1")}
    assert {"noise_vs_image.md", "noise_vs_image.tex"} <= written
    assert "nz (noise) → T" in (tmp_path / "r1" / "table1.md").read_text()
    # build() reads RUN/sweep/run.json of a reproduce run the same way
    md, _ = document.build(tmp_path, {}, plain, [], [])
    assert "### Noise-trained vs image-trained encoders" in md
    # the CLI names noise sources with --noise
    (sweep / "run.json").unlink()
    assert main(["report", str(sweep), "--out", str(tmp_path / "r2"), "--noise", "nz"]) == 0
    assert (tmp_path / "r2" / "noise_vs_image.md").exists()


@pytest.mark.slow  # a real (tiny) sweep: ~10 s on CPU
def test_sweep_with_other_backbones_and_a_noise_source_reports_them(tmp_path, monkeypatch):
    """A real sweep of gauss and hashgrid with an image source and a noise source: its cohort rows record the
    source's path, the report marks the noise source, compares it with the image source per backbone and draws
    one overview panel per backbone."""
    from inrlens.config import DataConfig, NetConfig, TrainConfig
    from inrlens.report import write_report
    from inrlens.store import prepare_run, read_rows
    from inrlens.sweep import ExecSpec, SweepSpec, run_config, run_sweep

    spec = SweepSpec(data=("img=sample:faces", "nz=noise:pink:n=4:size=16x16"), targets=("img",), backbones=("hashgrid", "gauss"),
                     seeds=(0, 1), n_cohort=2, n_test=2, net=NetConfig(width=8, depth=2),
                     cohort_train=TrainConfig(steps=6, lr=1e-3, log_every=5, target_psnr=30.0),
                     train=TrainConfig(steps=4, lr=1e-3, log_every=2), images=DataConfig(size=16), lpips=False)
    out = prepare_run(tmp_path / "sweep", run_config(spec), resume=True)
    run_sweep(spec, ExecSpec(cluster="debug"), out, log=lambda *a: None)
    cohorts = {(r["source"], r["backbone"]): r["source_path"] for r in read_rows(out / "results") if r.get("kind") == "cohort"}
    assert cohorts == {("img", "gauss"): "sample:faces", ("img", "hashgrid"): "sample:faces",
                       ("nz", "gauss"): "noise:pink:n=4:size=16x16", ("nz", "hashgrid"): "noise:pink:n=4:size=16x16"}
    drawn = _capture(monkeypatch, figures)
    names = {p.name for p in write_report(out)}
    assert {"noise_vs_image.md", "freeze_backbones.png", "freeze_sweep_gauss.png", "freeze_sweep_hashgrid.png"} <= names
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["backbones"] == ["gauss", "hashgrid"] and summary["noise_sources"] == ["nz"]
    assert [(c["backbone"], c["noise_source"], c["image_source"]) for c in summary["noise_vs_image"]] == [
        ("gauss", "nz", "img"), ("hashgrid", "nz", "img")]
    # the no-freeze difference against the fit rows themselves, paired by (image, seed)
    fits = [r for r in read_rows(out / "results") if r.get("kind") == "fit" and r["regime"] == "transfer" and r["freeze"] is None]
    for c in summary["noise_vs_image"]:
        psnr = {(r["source"], r["image"], r["seed"]): r["psnr"] for r in fits if r["backbone"] == c["backbone"]}
        diffs = [psnr[("nz", i, s)] - psnr[("img", i, s)] for (src, i, s) in psnr if src == "img"]
        assert c["none"]["n"] == len(diffs) == 4 and c["none"]["mean"] == pytest.approx(np.mean(diffs))
        assert (c["none"]["lo"], c["none"]["hi"]) == pytest.approx(hand_ci_n(diffs)[1:])
    assert "| gauss | nz (noise) → img |" in (out / "report" / "table1.md").read_text()
    overview = drawn[-1]
    assert [ax.get_title() for ax in overview.axes if ax.get_title()] == ["gauss", "hashgrid"]


def hand_ci_n(diffs):
    """(mean, lo, hi) of 4 values: t_{0.975, 3} = 3.182446305284263."""
    d = np.asarray(diffs, dtype=float)
    half = 3.182446305284263 * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
