"""`inrlens reproduce`: presets, the findings logic (against hand-computed values) and a tiny end-to-end run."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from inrlens.cli import main
from inrlens.commands.reproduce import STAGES, StudyConfig, load_preset, resolve_preset
from inrlens.report import document, tables


# ------------------------------------------------------------------------------------------- findings
def _fit(b, s, t, d, psnr, image="a", seed=0):
    regime = "random" if d == "random" else "transfer"
    freeze = d if isinstance(d, int) else None
    return {"kind": "fit", "key": f"{b}{s}{t}{d}{image}{seed}", "backbone": b, "source": None if regime == "random" else s,
            "target": t, "regime": regime, "freeze": freeze, "depth": d, "image": image, "seed": seed, "psnr": psnr, "ssim": 0.9,
            "lpips": None, "status": "ok"}


def _cohort(b, s, sr_w, sr_h):
    am = lambda v: max(range(len(v)), key=lambda i: (v[i], -i))  # noqa: E731
    return {"kind": "cohort", "key": f"c{b}{s}", "source": s, "backbone": b, "sr_w": sr_w, "sr_h": sr_h, "k_w": am(sr_w), "k_h": am(sr_h)}


def synthetic_rows():
    """Two sources × one target × two backbones, depths none/0/1/2/random, two images each.

    SIREN (src A): k=0: 40, k=1: 42, k=2: 41 → best 1 = paper; no-freeze 39. sr(W) argmax 1 ✓, sr(H) argmax 0 ✗.
    SIREN (src B): best k = 2 (44 vs 43, 30) ✗ paper; sr(W) argmax 2 ✓; sr(H) argmax 2 ✓; no-freeze 45.
    FFMLP (src A): k=0: 35, 1: 31, 2: 27 → best 0 = paper; sr(W) argmax 0 ✓, sr(H) 1 ✗; no-freeze 34.
    FFMLP (src B): k=0: 36, 1: 32, 2: 28 → best 0; sr(W) argmax 1 ✗, sr(H) 0 ✓; no-freeze 33.
    Each depth's two images are value ± 1, so the means are the listed values.
    """
    plan = {("siren", "A"): {"none": 39, 0: 40, 1: 42, 2: 41}, ("siren", "B"): {"none": 45, 0: 30, 1: 43, 2: 44},
            ("ffmlp", "A"): {"none": 34, 0: 35, 1: 31, 2: 27}, ("ffmlp", "B"): {"none": 33, 0: 36, 1: 32, 2: 28}}
    rows = []
    for (b, s), per in plan.items():
        for d, v in per.items():
            rows += [_fit(b, s, "T", d, v - 1.0, "a"), _fit(b, s, "T", d, v + 1.0, "b")]
    for b in ("siren", "ffmlp"):
        rows += [_fit(b, None, "T", "random", 20.0, "a"), _fit(b, None, "T", "random", 22.0, "b")]
    rows += [_cohort("siren", "A", [1.5, 9.0, 3.0], [8.0, 2.0, 1.0]), _cohort("siren", "B", [1.5, 3.0, 9.0], [1.0, 2.0, 8.0]),
             _cohort("ffmlp", "A", [9.0, 3.0, 1.0], [1.0, 8.0, 2.0]), _cohort("ffmlp", "B", [3.0, 9.0, 1.0], [8.0, 2.0, 1.0])]
    return rows


def test_findings_f1_f3_from_sweep_rows():
    s = tables.summarise(synthetic_rows())
    f1, f2, f3 = document.finding_f1(s), document.finding_f2(s), document.finding_f3(s)
    # F1: siren 1/2 pairs at k = 1, ffmlp 2/2 at k = 0 → 3/4 → partly
    assert "siren: best k = paper's k = 1 in 1/2 pairs" in f1.measured
    assert "ffmlp: best k = paper's k = 0 in 2/2 pairs" in f1.measured
    assert f1.verdict == "partly agrees"
    # F2: sr(W) right in siren A, siren B, ffmlp A (3/4); sr(H) in siren B, ffmlp B (2/4)
    assert "argmax sr(W) = best depth in 3/4, argmax sr(H) in 2/4" in f2.measured
    assert f2.verdict == "partly agrees"
    # F3 at k* = argmax sr(W): siren A k*=1 → 42, B k*=2 → 44: mean 43 vs no-freeze (39+45)/2 = 42 → +1.00
    assert "siren: k* 43.00 vs no-freeze 42.00 dB (gain +1.00 dB over 2 pairs" in f3.measured
    # ffmlp A k*=0 → 35, B k*=1 → 32: 33.5 vs (34+33)/2 = 33.5 → +0.00
    assert "ffmlp: k* 33.50 vs no-freeze 33.50 dB (gain +0.00 dB" in f3.measured
    # siren spread over k ≤ 2: per-depth means over sources 35, 42.5, 42.5 → 7.50; drop k=1→2: 0.00
    assert "siren spread over k ≤ 2: 7.50 dB, drop from k = 1 to k = 2: 0.00 dB" in f3.measured
    # ffmlp per-depth means 35.5, 31.5, 27.5 → slope −4.00 dB per layer
    assert "ffmlp PSNR change per extra frozen layer: -4.00 dB" in f3.measured
    assert f3.verdict == "agrees"


def test_findings_verdicts_change_with_the_data():
    rows = synthetic_rows()
    # make every siren pair peak at k = 1 → F1 agrees everywhere
    for r in rows:
        if r.get("kind") == "fit" and r["backbone"] == "siren" and r["source"] == "B" and r["freeze"] == 1:
            r["psnr"] += 5.0
    s = tables.summarise(rows)
    assert document.finding_f1(s).verdict == "agrees"
    # no-freeze far better than k* for both backbones → F3 disagrees
    for r in rows:
        if r.get("kind") == "fit" and r["regime"] == "transfer" and r["freeze"] is None:
            r["psnr"] += 20.0
    assert document.finding_f3(tables.summarise(rows)).verdict == "disagrees"
    empty = document.findings(None, [], [])
    assert [f.verdict for f in empty] == ["not measured"] * 5
    assert [f.id for f in empty] == ["F1", "F2", "F3", "F4", "F5"]


def test_findings_f4_f5_from_sae_and_ablation_rows():
    sae = []
    for cond, b, rho, dead in (("cohort-siren", "siren", 0.10, 5.0), ("single-siren", "siren", 0.20, 15.0),
                               ("cohort-ffmlp", "ffmlp", 0.50, 30.0), ("single-ffmlp", "ffmlp", 0.70, 10.0)):
        for ell in range(3):
            # layer 0 must be ignored: give it values that would flip the comparison
            sae.append({"condition": cond, "backbone": b, "layer": ell, "rho": rho if ell else 0.99, "dead_pct": dead if ell else 99.0})
    f4 = document.finding_f4(sae)
    assert "ρ SIREN 0.150 vs FFMLP 0.600 (4 and 4 SAEs)" in f4.measured
    assert "dead atoms SIREN 10.0 % vs FFMLP 20.0 %" in f4.measured
    # Welch, FFMLP − SIREN over 4 + 4 SAEs: ρ 0.45, se = √(0.0133/4 + 0.0033/4) = 0.0645, df 4.41, t 2.677 → [0.277, 0.623]
    # → agrees; dead % +10, se 6.45 → [−7.3, 27.3] straddles 0 (single-ffmlp has fewer dead atoms than single-siren)
    assert "ρ +0.450 [0.277, 0.623] (n=8) → agrees" in f4.measured
    assert "dead % +10.0 [-7.3, 27.3] (n=8) → inconclusive (n = 8 SAEs)" in f4.measured
    assert f4.verdict == "inconclusive (n = 8 SAEs)"
    abl = [{"condition": "cohort-siren", "layer": 2, "atom": 3, "psnr_drop": 1.5, "region_frac": 0.05, "locality": 1.0},
           {"condition": "cohort-siren", "layer": 1, "atom": 9, "psnr_drop": 0.5, "region_frac": 0.15, "locality": 1.0},
           {"condition": "single-ffmlp", "layer": 1, "atom": 7, "psnr_drop": 9.5, "region_frac": 0.9, "locality": 1.0},
           {"condition": "single-ffmlp", "layer": 2, "atom": 1, "psnr_drop": None, "region_frac": 0.3, "locality": None}]
    f5 = document.finding_f5(abl, sae)
    assert "siren: largest drop 1.50 dB (atom 3 at layer 2 of cohort-siren, firing region 5.0 % of the image)" in f5.measured
    assert "over its 2 ablated atoms mean firing region 10.0 %" in f5.measured
    assert "ffmlp: largest drop 9.50 dB (atom 7 at layer 1 of single-ffmlp" in f5.measured
    # one FFMLP atom with a finite drop: no interval for FFMLP − SIREN → undecided however large the gap looks
    assert "mean drop +8.50 [n/a] (n=3) dB → inconclusive (n = 3 ablated atoms)" in f5.measured
    assert f5.verdict == "inconclusive (n = 3 ablated atoms)"
    # swap the roles: SIREN drops more and spans more — still one atom on one side → inconclusive, not disagrees
    for r in abl:
        r["condition"] = r["condition"].replace("siren", "X").replace("ffmlp", "siren").replace("X", "ffmlp")
    assert document.finding_f5(abl, []).verdict == "inconclusive (n = 3 ablated atoms)"
    assert document.finding_f4(sae[:3]).verdict == "not measured"


def _noisy_sweep(n_images):
    """SIREN, one source A → target T: no-freeze = 30 + i; k = 1 is 1 dB better on average but each image's gain is
    1 + e_i with e cycling 3, −3, 2, −2 (paired s = 2.94); k = 0 and k = 2 are 6 and 7 dB below no freeze."""
    e = [3.0, -3.0, 2.0, -2.0]
    rows = []
    for i in range(n_images):
        base = 30.0 + i % 4
        for d, v in (("none", base), (0, base - 6.0), (1, base + 1.0 + e[i % 4]), (2, base - 7.0)):
            rows.append(_fit("siren", "A", "T", d, v, f"im{i}"))
    return rows + [_cohort("siren", "A", [1.0, 9.0, 2.0], [9.0, 1.0, 2.0])]


def test_findings_inconclusive_until_the_data_decide():
    # 4 images: gain diffs 4, −2, 3, −1 → mean 1, s = 2.94, half-width t_{0.975,3} · s / 2 = 4.68 → [−3.68, 5.68]
    f3 = document.finding_f3(tables.summarise(_noisy_sweep(4)))
    assert "gain +1.00 dB over 1 pairs, paired +1.00 [-3.68, 5.68] (n=4)" in f3.measured
    assert f3.verdict == "inconclusive (n = 4 fits)"
    # the same mean gain over 64 images: half-width ≈ 2.00 · 2.63 / 8 = 0.66 → low end above −0.5 dB → agrees
    s64 = tables.summarise(_noisy_sweep(64))
    m, lo, hi, n = document.S.mean_ci([4.0, -2.0, 3.0, -1.0] * 16)
    assert n == 64 and lo > -0.5
    assert f"paired +1.00 [{lo:.2f}, {hi:.2f}] (n=64)" in document.finding_f3(s64).measured
    assert document.finding_f3(s64).verdict == "agrees"
    # F1 with 4 images: k = 0 and k = 2 are significantly below k = 1 → best-k set {1} = paper's k → agrees
    f1 = document.finding_f1(tables.summarise(_noisy_sweep(4)))
    assert "A→T k=1 set {1}" in f1.measured and f1.verdict == "agrees"
    # two images: k = 0 − k = 1 is −10 and −4 (mean −7, s = 4.24, half-width t_{0.975,1} · 4.24 / √2 = 38.1) and
    # k = 2 − k = 1 is −11 and −5: neither is significantly negative, so the set holds every depth and the data
    # cannot single out a depth → undecided → inconclusive
    f1_2 = document.finding_f1(tables.summarise(_noisy_sweep(2)))
    assert "A→T k=1 set {0, 1, 2}" in f1_2.measured and f1_2.verdict == "inconclusive (n = 1 pairs, 1 undecided)"


def test_findings_f4_f5_decide_with_enough_atoms():
    sae = []
    for b, rhos, deads in (("siren", [0.10, 0.12, 0.11, 0.09, 0.13], [2, 3, 1, 2, 4]),
                           ("ffmlp", [0.60, 0.55, 0.62, 0.58, 0.65], [20, 25, 22, 18, 30])):
        sae += [{"condition": f"cohort-{b}", "backbone": b, "layer": ell + 1, "rho": r, "dead_pct": d}
                for ell, (r, d) in enumerate(zip(rhos, deads))]
    assert document.finding_f4(sae).verdict == "agrees"
    swapped = [dict(r, backbone={"siren": "ffmlp", "ffmlp": "siren"}[r["backbone"]]) for r in sae]
    assert document.finding_f4(swapped).verdict == "disagrees"
    abl = []
    for b, drops, regs in (("siren", [0.5, 0.8, 0.6, 0.4, 0.7], [0.05, 0.08, 0.06, 0.04, 0.07]),
                           ("ffmlp", [9.5, 7.0, 8.2, 6.5, 8.8], [0.9, 0.8, 0.85, 0.95, 0.88])):
        abl += [{"condition": f"cohort-{b}", "layer": 2, "atom": j, "psnr_drop": d, "region_frac": g, "locality": 1.0}
                for j, (d, g) in enumerate(zip(drops, regs))]
    f5 = document.finding_f5(abl, sae)
    assert f5.verdict == "agrees" and "(n=10) dB → agrees" in f5.measured
    flip = lambda c: c.replace("siren", "X").replace("ffmlp", "siren").replace("X", "ffmlp")  # noqa: E731
    assert document.finding_f5([dict(r, condition=flip(r["condition"])) for r in abl]).verdict == "disagrees"
    # only the regions swapped: FFMLP atoms still drop more but now fire in smaller regions → partly agrees
    by_b = {"siren": [r for r in abl if "siren" in r["condition"]], "ffmlp": [r for r in abl if "ffmlp" in r["condition"]]}
    mixed = [dict(r, region_frac=o["region_frac"]) for r, o in zip(by_b["siren"] + by_b["ffmlp"], by_b["ffmlp"] + by_b["siren"])]
    assert document.finding_f5(mixed).verdict == "partly agrees"


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1


def test_markdown_to_html_subset():
    md = ("# T\n\npara **b** `c` [l](x.html)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | <4> |\n\n![fig](f.png)\n\n"
          "- i\n- j\n\n```\nx < y\n```\n")
    out = document.md_to_html(md)
    p = _Cells()
    p.feed(out)
    assert p.tags["h1"] == 1 and p.tags["table"] == 1 and p.tags["th"] == 2 and p.tags["td"] == 4 and p.tags["li"] == 2
    assert p.tags["img"] == 1 and p.tags["strong"] == 1 and p.tags["code"] == 1 and p.tags["pre"] == 1 and p.tags["a"] == 1
    assert "&lt;4&gt;" in out and "x &lt; y" in out
    assert "http" not in out


# ------------------------------------------------------------------------------------------- presets
def test_builtin_presets_load_and_resolve():
    name, d = load_preset("demo")
    assert name == "demo" and set(d.datasets) == {"photos", "faces", "mri"}
    plan = resolve_preset("demo", (), None, None, None)
    # the demo scales the built-in sets by one factor (their resolution ratios kept), not to one square size
    assert plan.spec.net.depth == 5 and plan.spec.images.size is None and plan.spec.images.scale == 0.25
    assert plan.study.source == "photos" and plan.spec.n_test >= 4 and len(plan.spec.seeds) >= 2
    cpu = resolve_preset("cpu", ("celeba=/x/celeba",))
    assert cpu.spec.images.scale == 0.25 and list(cpu.datasets) == ["celeba", "mri", "photos"] and cpu.study.source == "celeba"
    assert cpu.study.analogues == {"mri": "oasis", "photos": "kodak"}
    paper = resolve_preset("paper", ("celeba=/x/celeba", "kodak=/x/kodak"), None, None, None)
    assert paper.spec.net.width == 256 and paper.spec.seeds == (0, 1, 2) and paper.spec.train.steps == 500
    assert paper.sae.n == 4096 and paper.sae.k == 32 and paper.study.source == "celeba"
    with pytest.raises(ValueError, match="--data NAME=PATH"):
        resolve_preset("paper", (), None, None, None)
    with pytest.raises(ValueError, match="unknown preset"):
        load_preset("nope")


@pytest.mark.parametrize("text,msg", [("[bogus]\nx = 1\n", "unknown table"), ("[study]\nfoo = 1\n", "unknown \\[study\\] field"),
                                      ("[sweep\n", "invalid TOML"), ("[sae]\nwidth = 3\n", "unknown \\[sae\\] field")])
def test_bad_preset_is_one_clear_error(tmp_path, capsys, text, msg):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    rc = main(["reproduce", "--preset", str(p), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("inrlens: error:") and re.search(msg, err[0])
    assert not (tmp_path / "run").exists()


def test_preset_tables_are_typed():
    """Each table is its config dataclass: the demo's values arrive typed, [study] defaults fill what is left out."""
    _, p = load_preset("demo")
    assert isinstance(p.study, StudyConfig) and p.study.conditions == ("single", "cohort") and p.study.ablate_layers == (2,)
    assert p.sweep.net.width == 32 and p.sweep.cohort_train.lr == 1e-3 and p.exec.jobs == 2 and p.sae.n == 256
    from inrlens.sweep import BackboneSettings

    assert isinstance(p.sweep.per_backbone["siren"], BackboneSettings) and p.sweep.per_backbone["siren"].lr == 2e-4
    assert StudyConfig().ablate_top == 10 and StudyConfig().layers == ()


def _tiny_with(tmp_path, lines: dict[str, str]):
    """TINY with some text replaced ({old: new}), written to p.toml."""
    text = TINY
    for old, new in lines.items():
        assert old in text, old
        text = text.replace(old, new)
    p = tmp_path / "p.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("lines,needles", [
    ({"net = { width = 16,": 'net = { width = "abc",'}, ["[sweep]", "net.width", "expected an integer", "'abc'"]),
    ({"jobs = 1": 'jobs = "two"'}, ["[exec] jobs", "expected an integer"]),
    ({"k = 3": "k = 3.5"}, ["[sae] k", "expected an integer"]),
    ({"atlas_top = 5": "atlas_top = true"}, ["[study] atlas_top", "expected an integer"]),
    ({"single_steps = 20": 'single_steps = 20\nconditions = ["single", "both"]'}, ["[study] conditions", "'both'"]),
    ({"single_steps = 20": "single_steps = 20\nmember = 3"}, ["[study] member 3", "outside 0..2", "n_cohort = 3"]),
    ({"single_steps = 20": "single_steps = 20\nlayers = [0, 3]"}, ["[study] layers [3]", "outside 0..2", "depth 3"]),
    ({"ablate_all_layers = true": "ablate_all_layers = false\nablate_layers = [5]"}, ["[study] ablate_layers [5]", "outside 0..2"]),
    ({"ablate_all_layers = true": "ablate_all_layers = false\nlayers = [0]\nablate_layers = [1]"}, ["ablate_layers [1]", "no SAE"]),
])
def test_bad_preset_values_fail_before_any_work(tmp_path, capsys, lines, needles):
    """A wrong type or a [study] value that does not fit the sweep: one line naming the table and field, exit 2,
    nothing written (the sweep never starts)."""
    p = _tiny_with(tmp_path, lines)
    rc = main(["reproduce", "--preset", str(p), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("inrlens: error: preset p: "), err
    for n in needles:
        assert n in err[0], (n, err[0])
    assert not (tmp_path / "run").exists()


def test_study_checks_against_the_sweep():
    spec = resolve_preset("demo").spec  # depth 5, n_cohort 10
    from inrlens.commands.reproduce import check_study

    ok = check_study(StudyConfig(member=9, layers=(0, 4), ablate_layers=(4,)), spec, {"photos": "sample:photos"})
    assert ok.source == "photos" and ok.member == 9
    for bad, msg in ((StudyConfig(member=10), "member 10 is outside 0..9"), (StudyConfig(layers=(5,)), r"layers \[5\] outside 0..4"),
                     (StudyConfig(ablate_layers=(-1,)), r"ablate_layers \[-1\]"), (StudyConfig(source="x"), "'x' is not a dataset")):
        with pytest.raises(ValueError, match=msg):
            check_study(bad, spec, {"photos": "sample:photos"})


# ------------------------------------------------------------------------------------------- end to end
TINY = """
[datasets]
faces = "sample:faces"
[sweep]
backbones = ["siren", "ffmlp"]
depths = ["all"]
seeds = [0]
n_cohort = 3
n_test = 1
lpips = false
net = { width = 16, depth = 3, ff_features = 16 }
cohort_train = { steps = 30, target_psnr = 30.0, lr = 1e-4 }
train = { steps = 15, lr = 1e-4 }
images = { size = 16, square = true, channels = "gray" }
[exec]
cluster = "debug"
jobs = 1
threads = 1
device = "cpu"
[sae]
n = 24
k = 3
steps = 20
batch = 256
[study]
single_steps = 20
atlas_top = 5
ablate_top = 2
ablate_all_layers = true
"""


def test_reproduce_end_to_end_and_resume(tmp_path, capsys):
    from inrlens.report.atlas import collect
    from inrlens.store import read_rows

    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    run = tmp_path / "run"
    assert main(["reproduce", "--preset", str(preset), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    for p in ("report.md", "report.html", "atlas/index.html", "timings.json", "sweep/report/table1.md"):
        assert (run / p).is_file(), p
    md = (run / "report.md").read_text()
    for fid in ("F1", "F2", "F3", "F4", "F5"):
        assert f"| {fid} |" in md and f"\n{fid} [" in out

    # F1's best k per pair, recomputed here with a plain loop over the fit rows
    fits = [r for r in read_rows(run / "sweep" / "results") if r.get("kind") == "fit"]
    assert len(fits) == 2 * 1 * (3 + 2) * 1  # backbones × test images × (k = 0..2, none, random) × seeds
    for b in ("siren", "ffmlp"):
        per_k = {}
        for r in fits:
            if r["backbone"] == b and r["regime"] == "transfer" and r["freeze"] is not None:
                per_k.setdefault(r["freeze"], []).append(r["psnr"])
        best = max(sorted(per_k), key=lambda k: sum(per_k[k]) / len(per_k[k]))
        assert f"faces→faces k={best}" in md.split(f"{b}: best k")[1].split(";")[0]

    # inrlens.results: the sweep's fits, and at the run root also the single-signal fits (one per backbone, fitted
    # by the library's fit_images into single/<backbone>/ with the checkpoint at the folder's root)
    import inrlens

    sweep_df = inrlens.results(run / "sweep")
    assert sorted(sweep_df["key"]) == sorted(r["key"] for r in fits)
    assert len(inrlens.results(run / "sweep", "cohort")) == 2
    root = inrlens.results(run)
    single = root[root["regime"] == "single"]
    assert len(root) == len(fits) + 2 and sorted(single["file"]) == ["single/ffmlp/results.jsonl", "single/siren/results.jsonl"]
    assert (single["train.steps"] == 20).all() and (single["lr"] == [1e-4 if b == "siren" else 1e-3 for b in single["net.backbone"]]).all()
    conditions = ("single-siren", "single-ffmlp", "cohort-siren", "cohort-ffmlp")
    sae_all = [r for c in conditions for r in read_rows(run / "sae" / c / "results.jsonl")]
    assert len(inrlens.results(run, "sae")) == len(sae_all) == 4 * 3  # conditions × layers
    for b in ("siren", "ffmlp"):
        stack, meta = inrlens.load_stack(run / "single" / b)
        assert stack.members == 1 and meta["regime"] == "single" and meta["members"][0].endswith("@0")

    # the atlas shows every condition and layer that has SAEs
    conds = collect([run / "sae" / c for c in ("single-siren", "single-ffmlp", "cohort-siren", "cohort-ffmlp")])
    assert sorted(c.name for c in conds) == ["cohort-ffmlp", "cohort-siren", "single-ffmlp", "single-siren"]
    assert all([lay.layer for lay in c.layers] == [0, 1, 2] and len(c.layers[0].atoms) == 5 for c in conds)
    assert all(sum(a.psnr_drop is not None for a in lay.atoms) == 2 for c in conds for lay in c.layers)
    html = (run / "atlas" / "index.html").read_text()
    data = json.loads(re.search(r'id="atlas-data">(.*?)</script>', html, re.S).group(1))
    assert [c["name"] for c in data["conditions"]] == [c.name for c in conds]

    # a second run into the same folder without --resume is refused; with --resume nothing is refitted
    n_rows = len(read_rows(run / "sweep" / "results"))
    sae_rows = len(read_rows(run / "sae" / "cohort-siren" / "results.jsonl"))
    assert main(["reproduce", "--preset", str(preset), "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["reproduce", "--preset", str(preset), "--out", str(run), "--resume"]) == 0
    assert len(read_rows(run / "sweep" / "results")) == n_rows
    assert len(read_rows(run / "sae" / "cohort-siren" / "results.jsonl")) == sae_rows
    assert (run / "report.md").read_text().split("## Findings")[1] == md.split("## Findings")[1]
    inv = json.loads((run / "timings.json").read_text())["invocations"]
    assert len(inv) == 2 and all(set(STAGES) <= set(i) for i in inv)
    assert "over 2 invocation(s)" in (run / "report.md").read_text()


# ------------------------------------------------------------------------------------------- per-backbone settings
def test_per_backbone_settings_resolve_in_one_place(tmp_path):
    """A per_backbone entry changes exactly that backbone's cohorts and fits: their keys equal those of a sweep
    that sets the same values for every backbone, the other backbone's keys do not move, and a spec without the
    table keeps the keys it had (per_backbone is left out of key_dict while unset)."""
    from dataclasses import replace

    from inrlens.config import TrainConfig, key_dict
    from inrlens.rules import backbone_spec
    from inrlens.sweep import SweepSpec, make_plan, spec_from_dict

    base = {"data": {"faces": "sample:faces"}, "n_cohort": 3, "n_test": 1, "seeds": [0], "depths": ["none", "random"],
            "net": {"width": 16, "depth": 3, "ff_features": 16}, "images": {"size": 16}, "lpips": False,
            "train": {"steps": 15, "lr": 1e-4}, "cohort_train": {"steps": 30, "lr": 1e-4}}
    plain, _ = spec_from_dict(base)
    tuned, _ = spec_from_dict({**base, "per_backbone": {"ffmlp": {"lr": 1e-3, "steps": 40, "width": 24, "random_lr": 2e-3}}})
    assert "per_backbone" not in key_dict(plain) and key_dict(tuned)["per_backbone"]["ffmlp"]["lr"] == 1e-3
    assert backbone_spec(plain, "ffmlp") is plain and backbone_spec(tuned, "siren") is tuned
    eff = backbone_spec(tuned, "ffmlp")
    assert (eff.net.width, eff.train.steps, eff.train.lr, eff.random_lr, eff.per_backbone) == (24, 40, 1e-3, 2e-3, None)
    # the same values given to the whole sweep
    same = replace(plain, net=replace(plain.net, width=24), train=TrainConfig(steps=40, lr=1e-3), random_lr=2e-3)
    p_plain, p_tuned, p_same = (make_plan(s, tmp_path) for s in (plain, tuned, same))
    by = lambda p, b: sorted((f.key, f.lr, f.regime) for f in p.fits if f.backbone == b)  # noqa: E731
    assert by(p_tuned, "siren") == by(p_plain, "siren")
    assert by(p_tuned, "ffmlp") == by(p_same, "ffmlp") != by(p_plain, "ffmlp")
    assert {f.lr for f in p_tuned.fits if f.backbone == "ffmlp"} == {1e-3, 2e-3}
    co = {c.backbone: c for c in p_tuned.cohorts}
    assert co["ffmlp"].net.width == 24 and co["siren"].net.width == 16
    assert co["ffmlp"].key == {c.backbone: c for c in p_same.cohorts}["ffmlp"].key
    for bad, msg in (({"nope": {}}, "unknown backbone 'nope'"), ({"ffmlp": {"lr": 0}}, "per_backbone.ffmlp: lr must be"),
                     ({"ffmlp": {"depth": 3}}, "unknown setting"), ({"siren": {"width": 0}}, "width must be >= 1")):
        with pytest.raises(ValueError, match=msg):
            spec_from_dict({**base, "per_backbone": bad}, source="f.toml")
    assert SweepSpec().per_backbone is None


def test_per_backbone_steps_reach_the_fits(tmp_path):
    """The jobs fit each backbone with its own test-time steps and lr (the rows record them)."""
    from inrlens.store import read_rows
    from inrlens.sweep import ExecSpec, run_sweep, spec_from_dict

    spec, _ = spec_from_dict({"data": {"faces": "sample:faces"}, "n_cohort": 2, "n_test": 1, "seeds": [0],
                              "depths": ["none"], "net": {"width": 8, "depth": 2, "ff_features": 8}, "lpips": False,
                              "images": {"size": 8}, "train": {"steps": 5, "lr": 1e-4}, "cohort_train": {"steps": 3},
                              "per_backbone": {"ffmlp": {"steps": 7, "lr": 3e-3}}})
    run_sweep(spec, ExecSpec(cluster="debug", jobs=1), tmp_path, log=lambda *a: None)
    rows = {r["backbone"]: r for r in read_rows(tmp_path / "results") if r.get("kind") == "fit"}
    assert (rows["siren"]["steps_run"], rows["siren"]["lr"]) == (5, 1e-4)
    assert (rows["ffmlp"]["steps_run"], rows["ffmlp"]["lr"], rows["ffmlp"]["train"]["steps"]) == (7, 3e-3, 7)


# ------------------------------------------------------------------------------------------- paper analogues
def test_regime_check_uses_the_analogue_band():
    """faces plays CelebA: its no-freeze mean (42 and 44 → 43) is compared with SIREN's CelebA band (43 dB) and
    FFMLP's (33–35); a target with neither a paper name nor an analogue has no band; 'kodak' needs no mapping."""
    from inrlens import stats as S

    rows = [_fit("siren", "A", "faces", "none", 42.0, "a"), _fit("siren", "A", "faces", "none", 44.0, "b"),
            _fit("ffmlp", "A", "faces", "none", 40.0, "a"), _fit("ffmlp", "A", "faces", "none", 40.0, "b"),
            _fit("siren", "A", "other", "none", 30.0), _fit("siren", "A", "Kodak", "none", 36.0)]
    plain = {(r["backbone"], r["target"]): r for r in tables.regime_check(rows)}
    assert plain[("siren", "faces")]["paper"] is None and plain[("siren", "faces")]["flag"] == "paper band unknown"
    got = {(r["backbone"], r["target"]): r for r in tables.summarise(rows, {"faces": "celeba"})["regime"]}
    assert got[("siren", "faces")]["paper"] == [43.0, 43.0] and got[("siren", "faces")]["mean"] == 43.0
    assert got[("siren", "faces")]["flag"].startswith("inside") and got[("siren", "faces")]["paper_dataset"] == "celeba"
    # FFMLP 40 dB vs 33–35 + 3 = 38 → outside by 2.00 dB
    assert got[("ffmlp", "faces")]["flag"] == "outside the band by 2.00 dB"
    assert got[("siren", "other")]["paper"] is None and got[("siren", "other")]["paper_dataset"] is None
    # Kodak by its own name: 30–31 + 3 = 34 → 36 is outside by 2.00
    assert got[("siren", "Kodak")]["paper"] == [30.0, 31.0] and got[("siren", "Kodak")]["flag"] == "outside the band by 2.00 dB"
    md = tables.regime_table({"regime": list(got.values())})
    assert "| siren | faces (as celeba) |" in md and "| siren | Kodak |" in md and "| siren | other |" in md
    assert S.band_distance(39.0, (43.0, 43.0)) == 1.0 and S.band_distance(46.0, (43.0, 43.0)) == 0.0
    for bad, msg in (({"faces": "imagenet"}, "not one of the paper's datasets"), ({"x": "celeba"}, "'x' is not a dataset")):
        with pytest.raises(ValueError, match=msg):
            S.check_analogues(bad, ["faces"])
    assert S.check_analogues({"faces": "CelebA"}, ["faces"]) == {"faces": "celeba"}


def test_data_replaces_the_analogue_of_a_paper_dataset(tmp_path):
    """--data celeba=PATH on a preset where faces plays CelebA replaces faces in its place (source follows); a new
    name that plays nothing is added; analogues naming no dataset or no paper dataset are one-line errors."""
    from inrlens.commands.reproduce import recorded_study, with_data

    study = StudyConfig(source="faces", analogues={"faces": "celeba", "mri": "oasis"})
    ds = {"photos": "sample:photos", "faces": "sample:faces", "mri": "sample:mri"}
    got, st = with_data(ds, study, {"celeba": "/x/celeba", "extra": "/x/e"})
    assert list(got.items()) == [("photos", "sample:photos"), ("celeba", "/x/celeba"), ("mri", "sample:mri"), ("extra", "/x/e")]
    assert st.source == "celeba" and st.analogues == {"mri": "oasis"}
    got, st = with_data(ds, study, {"faces": "/y"})  # the same name: replaced, analogue kept
    assert got["faces"] == "/y" and st.analogues == study.analogues and st.source == "faces"
    p = tmp_path / "a.toml"
    p.write_text(TINY + 'analogues = { faces = "CelebA" }\n')
    plan = resolve_preset(str(p))
    assert plan.study.analogues == {"faces": "celeba"} and "analogues" not in recorded_study(plan.study)
    from dataclasses import fields

    assert set(recorded_study(plan.study)) == {f.name for f in fields(StudyConfig)} - {"analogues"}
    plan = resolve_preset(str(p), ("celeba=sample:faces",))
    assert list(plan.datasets) == ["celeba"] and plan.study.analogues == {} and plan.study.source == "celeba"
    for text, msg in (('analogues = { faces = "imagenet" }', "not one of the paper's datasets"),
                      ('analogues = { nope = "kodak" }', "'nope' is not a dataset")):
        p.write_text(TINY + text + "\n")
        with pytest.raises(ValueError, match=msg):
            resolve_preset(str(p))
    demo = resolve_preset("demo")
    assert demo.study.analogues == {"faces": "celeba", "mri": "oasis", "photos": "kodak"}
    paper = resolve_preset("paper", ("celeba=/x/c",))
    assert paper.study.analogues == {} and list(paper.datasets) == ["celeba"]


# ------------------------------------------------------------------------------------------- --plan
def test_plan_counts_match_the_sweep_and_write_nothing(tmp_path, capsys):
    """--plan prints the sweep plan's own counts (cohorts, fits, fits per backbone and regime), the SAE and
    ablation counts computed by hand, and a time estimate; it writes no file anywhere under tmp_path."""
    from inrlens.commands.reproduce import estimate_time, study_counts
    from inrlens.sweep import make_plan

    p = tmp_path / "tiny.toml"
    p.write_text(TINY)
    before = sorted(tmp_path.rglob("*"))
    run = tmp_path / "run"
    assert main(["reproduce", "--preset", str(p), "--out", str(run), "--plan"]) == 0
    out = capsys.readouterr().out
    assert sorted(tmp_path.rglob("*")) == before and not run.exists()
    plan = resolve_preset(str(p))
    gp = make_plan(plan.spec, run / "sweep")
    assert f"{len(gp.cohorts)} cohorts, {len(gp.fits)} fits" in out
    assert (len(gp.cohorts), len(gp.fits)) == (2, 2 * 1 * 5 * 1)  # backbones × test images × (none, k=0..2, random) × seeds
    for b in ("siren", "ffmlp"):
        assert f"{b}: none 1, k=0 1, k=1 1, k=2 1, random 1" in out
    # SAEs: {single, cohort} × 2 backbones × 3 layers; ablations: every layer × 2 atoms; atom maps: 5 per layer
    assert "12 SAEs (n = 24, k = 3, 20 steps)" in out and "24 single-atom ablations" in out and "60 atom maps" in out
    assert "estimated wall time" in out and "an estimate, not a measurement" in out and "on idle cores" in out
    counts = study_counts(plan, run)
    assert counts["fits"] == len(gp.fits) and sum(counts["fits by"].values()) == len(gp.fits)
    est = estimate_time(plan, counts, steps=3)
    # one debug job: every stage runs one after the other, so the parts add up
    assert est["fits"] == pytest.approx(est["fits_serial"]) and est["cohorts"] == pytest.approx(est["cohorts_serial"])
    assert est["total"] == pytest.approx(est["cohorts"] + est["fits"] + est["single"] + est["sae"]) and est["total"] > 0
    idle = est["idle"]
    assert idle["total"] == pytest.approx(idle["cohorts"] + idle["fits"] + idle["single"] + idle["sae"]) and idle["total"] > 0
    assert not run.exists()


def test_report_command_takes_analogues(tmp_path, capsys):
    """`inrlens report RUN --analogue faces=celeba` puts faces' no-freeze PSNR beside CelebA's band in summary.json
    and report.md; without the flag the band is unknown; a bad value is one line and writes nothing."""
    from inrlens.store import append_row

    res = tmp_path / "sweep" / "results"
    for r in synthetic_rows():
        append_row(res / "rows.jsonl", dict(r, target="faces") if r.get("kind") == "fit" else r)
    out = tmp_path / "rep"
    assert main(["report", str(tmp_path / "sweep"), "--out", str(out), "--analogue", "faces=CelebA"]) == 0
    reg = {r["backbone"]: r for r in json.loads((out / "summary.json").read_text())["regime"]}
    assert reg["siren"]["paper"] == [43.0, 43.0] and reg["siren"]["paper_dataset"] == "celeba"
    assert "faces (as celeba)" in (out / "report.md").read_text()
    assert main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "plain")]) == 0
    assert json.loads((tmp_path / "plain" / "summary.json").read_text())["regime"][0]["paper"] is None
    capsys.readouterr()
    assert main(["report", str(tmp_path / "sweep"), "--out", str(tmp_path / "bad"), "--analogue", "faces"]) == 2
    assert "--analogue expects NAME=" in capsys.readouterr().err and not (tmp_path / "bad").exists()
