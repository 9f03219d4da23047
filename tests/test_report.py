"""Tables and figures from a results file alone (hand-made rows with hand-computed expectations)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from inrlens.report import write_report
from inrlens.report.tables import summarise
from inrlens.store import append_row

# PSNR offsets per (source, depth); the best k is A: 1, B: 0
BUMP = {"A": {"none": 0.0, 0: 1.0, 1: 3.0, 2: -2.0}, "B": {"none": 0.0, 0: 2.0, 1: 1.0, 2: 0.5}}
RANDOM = -5.0
IMAGES, SEEDS = 3, 2


def psnr(bump: float, i: int, s: int, target: str) -> float:
    return 30.0 + bump + 0.5 * i + 0.1 * s + (1.0 if target == "B" else 0.0)


def make_rows(path: Path) -> None:
    for tgt in ("A", "B"):
        for i in range(IMAGES):
            for s in range(SEEDS):
                for src in ("A", "B"):
                    for d, b in BUMP[src].items():
                        append_row(path, {"kind": "fit", "key": f"{src}{tgt}{d}{i}{s}", "backbone": "siren", "source": src,
                                          "target": tgt, "regime": "transfer", "freeze": None if d == "none" else d,
                                          "depth": d, "image": f"im{i}", "seed": s, "status": "ok",
                                          "psnr": psnr(b, i, s, tgt), "ssim": 0.5 + 0.01 * i, "lpips": 0.2})
                append_row(path, {"kind": "fit", "key": f"R{tgt}{i}{s}", "backbone": "siren", "source": None, "target": tgt,
                                  "regime": "random", "freeze": None, "depth": "random", "image": f"im{i}", "seed": s,
                                  "status": "ok", "psnr": psnr(RANDOM, i, s, tgt), "ssim": 0.4, "lpips": None})
    # a diverged fit is left out of the means; a duplicate key (a resumed writer) is counted once
    append_row(path, {"kind": "fit", "key": "div", "backbone": "siren", "source": "A", "target": "A", "regime": "transfer",
                      "freeze": 2, "depth": 2, "image": "im9", "seed": 0, "status": "diverged", "psnr": None, "ssim": None, "lpips": None})
    append_row(path, {"kind": "fit", "key": "AA100", "backbone": "siren", "source": "A", "target": "A", "regime": "transfer",
                      "freeze": 1, "depth": 1, "image": "im0", "seed": 0, "status": "ok", "psnr": 99.0, "ssim": 0.0, "lpips": 0.0})
    for src, sw, sh in (("A", [1.5, 6.0, 4.0], [9.0, 3.0, 2.0]), ("B", [1.5, 5.0, 7.0], [9.5, 3.0, 1.0])):
        append_row(path.parent / f"cohort-{src}.jsonl", {"kind": "cohort", "key": f"c{src}", "source": src, "backbone": "siren",
                                                          "sr_w": sw, "sr_h": sh, "k_w": sw.index(max(sw)), "k_h": sh.index(max(sh)),
                                                          "grid": [16, 16], "psnr_mean": 31.0, "steps_run": 100})


def expected(src: str, tgt: str, d) -> tuple[float, float]:
    b = RANDOM if d == "random" else BUMP[src][d]
    vals = [psnr(b, i, s, tgt) for i in range(IMAGES) for s in range(SEEDS)]
    return statistics.mean(vals), statistics.stdev(vals)


@pytest.fixture
def results(tmp_path) -> Path:
    d = tmp_path / "only_results"
    d.mkdir()
    make_rows(d / "fits.jsonl")
    return d


def test_summary_numbers(results):
    from inrlens.store import read_rows

    s = summarise(read_rows(results))
    t1 = {(r["source"], r["target"]): r for r in s["table1"]}
    assert len(t1) == 4
    for (src, tgt), r in t1.items():
        assert r["best_k"] == {"A": 1, "B": 0}[src]
        m, sd = expected(src, tgt, "none")
        assert r["none"] == pytest.approx(m) and r["none_std"] == pytest.approx(sd)
        m, sd = expected(src, tgt, r["best_k"])
        assert r["best"] == pytest.approx(m) and r["best_std"] == pytest.approx(sd)
        assert r["random"] == pytest.approx(expected(src, tgt, "random")[0])
        assert r["w_agrees"] == (src == "A") and r["h_agrees"] == (src == "B")
    stats = s["stats"]
    assert stats["siren|A|A|2"]["n"] == IMAGES * SEEDS and stats["siren|A|A|2"]["n_bad"] == 1
    assert stats["siren|A|A|random"]["lpips"] != stats["siren|A|A|random"]["lpips"]  # all-missing LPIPS → NaN
    preds = {p["source"]: p for p in s["predictions"]}
    assert preds["A"]["empirical_k"] == 1 and preds["A"]["k_w"] == 1 and preds["A"]["w_agrees"] and not preds["A"]["h_agrees"]
    assert preds["B"]["empirical_k"] == 0 and preds["B"]["k_w"] == 2 and not preds["B"]["w_agrees"] and preds["B"]["h_agrees"]
    avg = s["averages"]["siren"]
    assert avg["none"] == pytest.approx(statistics.mean(expected(a, b, "none")[0] for a in "AB" for b in "AB"))


def test_report_files_from_results_alone(results, tmp_path):
    out = tmp_path / "rep"
    paths = write_report(results, out)
    names = {p.name for p in paths}
    for stem in ("table1", "predictions", "per_combination"):
        assert {f"{stem}.md", f"{stem}.tex"} <= names
    for fig in ("freeze_sweep_siren", "stable_rank_siren"):
        assert (out / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{fig}.pdf").read_bytes()[:5] == b"%PDF-"
        from PIL import Image

        w, h = Image.open(out / f"{fig}.png").size
        assert w >= 600 and h >= 300  # readable at paper size (150 dpi)
    md = (out / "table1.md").read_text()
    m_best, sd_best = expected("A", "A", 1)
    assert f"**{m_best:.2f} ± {sd_best:.2f}**" in md  # best-k PSNR bold where it beats no freeze
    assert "| 1 ✓ |" in md and "| 2 ✗ |" in md
    tex = (out / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "\\textbf{" in tex and "$\\checkmark$" in tex and "±" not in tex
    per = (out / "per_combination.md").read_text()
    assert per.count("| no freeze |") == 4 and per.count("| random init |") == 4
    assert "| **1** | 6.00 | 3.00 |" in per  # sr(W_1), sr(H_1) of cohort A beside the best row
    pred = (out / "predictions.md").read_text()
    assert "agrees in 1/2" in pred and "sr(H) in 1/2" in pred
    assert json.loads((out / "summary.json").read_text())["n_fits"] == 2 * IMAGES * SEEDS * (2 * 4 + 1) + 1


def test_report_cli(results, tmp_path):
    from inrlens.cli import main

    assert main(["report", str(results), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "table1.md").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_table1_shows_paired_gain_interval_and_best_set(results):
    from inrlens.report.tables import table1
    from inrlens.stats import mean_ci, t_quantile
    from inrlens.store import read_rows

    s = summarise(read_rows(results))
    t1 = {(r["source"], r["target"]): r for r in s["table1"]}
    # A → A: k = 1 is exactly 3 dB above no freeze on every (image, seed) → gain +3.00 [3.00, 3.00] over 6 fits
    g = t1[("A", "A")]["gain"]
    assert g["mean"] == pytest.approx(3.0) and g["lo"] == pytest.approx(3.0) and g["hi"] == pytest.approx(3.0) and g["n"] == IMAGES * SEEDS
    assert t1[("A", "A")]["best_set"] == [1] and t1[("B", "B")]["best_set"] == [0]
    md = table1(s)
    assert "| +3.00 [3.00, 3.00] (n=6) | {1} |" in md and "| +2.00 [2.00, 2.00] (n=6) | {0} |" in md
    # held-out gain column: k = 1 is best on every image, so each held-out image gets k = 1 and the same +3
    assert "| +3.00 [3.00, 3.00] (n=6) | +3.00 [3.00, 3.00] (n=6) | {1} |" in md
    assert t1[("A", "A")]["crossfit_picks"] == [1] and "Held-out gain" in md
    # mean over pairs: gains 3, 3, 2, 2 → mean 2.5, s = 0.5774, half-width t_{0.975,3} · s / 2
    half = t_quantile(0.975, 3) * statistics.stdev([3, 3, 2, 2]) / 2
    assert f"| +2.50 [{2.5 - half:.2f}, {2.5 + half:.2f}] (n=4) |" in md
    assert "sample standard deviation (ddof = 1)" in md and "95% Student-t interval" in md
    tex = table1(s, latex=True)
    assert "\\{1\\}" in tex and "95\\%" in tex and "±" not in tex
    # per-combination tables: each depth's paired difference to no freeze
    from inrlens.report.tables import combo_tables

    assert "| 6 | -2.00 [-2.00, -2.00] (n=6) |" in combo_tables(s)  # A → A, k = 2: bump −2 vs 0
    # noisy gains: the interval is the t interval of the per-fit differences (independent reference: mean_ci)
    rows = []
    diffs = [2.0, -1.0, 1.5, 0.5]
    for i, dlt in enumerate(diffs):
        for d, v in (("none", 30.0 + i), (0, 30.0 + i + dlt)):
            rows.append({"kind": "fit", "key": f"n{d}{i}", "backbone": "siren", "source": "S", "target": "T", "regime": "transfer",
                         "freeze": None if d == "none" else d, "image": f"im{i}", "seed": 0, "status": "ok", "psnr": v})
    rows.append({"kind": "fit", "key": "odd", "backbone": "siren", "source": "S", "target": "T", "regime": "transfer",
                 "freeze": 0, "image": "unmatched", "seed": 0, "status": "ok", "psnr": 80.0})  # no no-freeze partner
    s2 = summarise(rows)
    m, lo, hi, n = mean_ci(diffs)
    assert n == 4 and f"{m:+.2f} [{lo:.2f}, {hi:.2f}] (n=4)" in table1(s2)
    # one depth: held out, every image is scored at k = 0 (the unmatched image has no no-freeze partner) → the same interval
    assert s2["table1"][0]["gain_crossfit"] == pytest.approx({"mean": m, "lo": lo, "hi": hi, "n": 4})
    assert f"| {m:+.2f} [{lo:.2f}, {hi:.2f}] (n=4) | {m:+.2f} [{lo:.2f}, {hi:.2f}] (n=4) |" in table1(s2)
    assert s2["table1"][0]["best"] == pytest.approx((sum(30 + i + d for i, d in enumerate(diffs)) + 80) / 5)  # means keep every fit


def _nofreeze(backbone, target, psnrs):
    return [{"kind": "fit", "key": f"{backbone}{target}{i}", "backbone": backbone, "source": "src", "target": target, "regime": "transfer",
             "freeze": None, "image": f"im{i}", "seed": 0, "status": "ok", "psnr": p} for i, p in enumerate(psnrs)]


def test_regime_check_flags():
    from inrlens.report.tables import regime_table

    rows = (_nofreeze("siren", "celeba", [43.0, 45.0]) + _nofreeze("siren", "kodak", [56.0, 56.0])
            + _nofreeze("ffmlp", "oasis", [19.0, 19.0]) + _nofreeze("ffmlp", "kodak", [35.5, 36.5]) + _nofreeze("ffmlp", "faces", [40.0]))
    rows.append({"kind": "fit", "key": "bad", "backbone": "siren", "source": "src", "target": "celeba", "regime": "transfer",
                 "freeze": None, "image": "im9", "seed": 0, "status": "diverged", "psnr": None})
    reg = {(r["backbone"], r["target"]): r for r in summarise(rows)["regime"]}
    assert reg[("siren", "celeba")]["flag"] == "inside the paper's band (±3 dB)"
    assert reg[("siren", "celeba")]["mean"] == 44.0 and reg[("siren", "celeba")]["std"] == pytest.approx(statistics.stdev([43, 45]))
    assert reg[("siren", "celeba")]["n"] == 2 and reg[("siren", "celeba")]["paper"] == [43.0, 43.0]
    assert reg[("siren", "kodak")]["flag"] == "saturated (> 55 dB)"
    assert reg[("ffmlp", "oasis")]["flag"] == "failed (< 20 dB)"
    assert reg[("ffmlp", "kodak")]["flag"] == "outside the band by 4.00 dB"  # 36 vs paper 28–29 widened to 25–32
    assert reg[("ffmlp", "faces")]["flag"] == "paper band unknown" and reg[("ffmlp", "faces")]["paper"] is None
    md = regime_table(summarise(rows))
    assert "| siren | celeba | 44.00 ± 1.41 | 2 | 43 | inside the paper's band (±3 dB) |" in md
    assert "| ffmlp | kodak | 36.00 ± 0.71 | 2 | 28–29 | outside the band by 4.00 dB |" in md
    assert "| ffmlp | faces | 40.00 ± 0.00 | 1 | — | paper band unknown |" in md
    assert "band unknown" in md.split("\n")[0]


def test_report_md_has_regime_check_and_findings_intervals(results, tmp_path):
    from inrlens.report import document
    from inrlens.store import read_rows

    md, fs = document.build(tmp_path, {"preset": "t"}, read_rows(results), [], [])
    assert "## Regime check (no-freeze PSNR vs the paper)" in md and "| siren | A | 31.05 ± 0.58 |" not in md
    assert "| siren | A | 30.55 ± 0.43 | 12 | — | paper band unknown |" in md  # 2 sources × 3 images × 2 seeds
    assert md.count("sample standard deviation (ddof = 1)") == 2  # the findings intro and Table 1's caption
    f3 = {f.id: f for f in fs}["F3"]
    assert "95% CI" in f3.measured and "(n=24)" in f3.measured  # 4 pairs × 3 images × 2 seeds


# ------------------------------------------------------------------------------------------------ four predictors
# Sources A, B, D: deterministic offsets (every paired difference is constant, so each best-k set is the best depth
# alone); C: noisy, no difference significant, so its best-k set holds every depth (undecided). One target T.
PRED_BUMP = {"A": {"none": 0.0, 0: 1.0, 1: 3.0, 2: -2.0}, "B": {"none": 0.0, 0: 2.0, 1: 1.0, 2: 0.5},
             "D": {"none": 0.0, 0: 1.0, 1: 3.0, 2: -2.0}}
PRED_NOISY_C = {"none": [30.0, 30.0, 30.0], 0: [30.0, 32.0, 31.0], 1: [31.0, 30.5, 31.6], 2: [30.8, 31.9, 30.2]}
# (sr_w, sr_h, sr_h_centred, sr_w_init, delta_sr); D is a row written before the newer fields existed
PRED_COHORTS = {
    "A": ([1.5, 6.0, 4.0], [9.0, 3.0, 2.0], [10.0, 30.0, 20.0], [1.4, 5.5, 2.0], [0.1, 0.5, 2.0]),   # W 1 ✓, H 0 ✗, Hc 1 ✓, Δ 2 ✗
    "B": ([1.5, 5.0, 7.0], [9.5, 4.0, 1.0], [12.0, 28.0, 15.0], [1.0, 4.9, 6.95], [0.5, 0.1, 0.05]),  # W 2 ✗, H 0 ✓, Hc 1 ✗, Δ 0 ✓
    "C": ([6.0, 5.0, 4.0], [1.0, 2.0, 3.0], [1.0, 5.0, 2.0], [5.0, 4.5, 3.9], [1.0, 0.5, 0.1]),       # all ? (every depth in the set)
    "D": ([1.0, 8.0, 2.0], [1.0, 5.0, 2.0], None, None, None),                                          # W 1 ✓, H 1 ✓, new ones —
}


def _am(v):
    return max(range(len(v)), key=lambda i: (v[i], -i))


def predictor_rows() -> list[dict]:
    rows = []
    for src in "ABCD":
        for d in ("none", 0, 1, 2):
            for i in range(3):
                v = PRED_NOISY_C[d][i] if src == "C" else 30.0 + PRED_BUMP[src][d] + 0.5 * i
                rows.append({"kind": "fit", "key": f"{src}{d}{i}", "backbone": "siren", "source": src, "target": "T",
                             "regime": "transfer", "freeze": None if d == "none" else d, "image": f"im{i}", "seed": 0,
                             "status": "ok", "psnr": v, "ssim": 0.5, "lpips": 0.2})
        sw, sh, shc, w0, dsr = PRED_COHORTS[src]
        co = {"kind": "cohort", "key": f"c{src}", "source": src, "backbone": "siren", "sr_w": sw, "sr_h": sh, "k_w": _am(sw),
              "k_h": _am(sh), "grid": [16, 16], "psnr_mean": 31.0, "steps_run": 100}
        if shc is not None:
            co.update(sr_h_centred=shc, k_h_centred=_am(shc), sr_w_init=w0, delta_sr=dsr, k_delta=_am(dsr))
        if src in "AB":
            co["net"] = {"backbone": "siren", "width": 256, "depth": 3}
        rows.append(co)
    return rows


def _line(md: str, text: str) -> str:
    (ln,) = [x for x in md.splitlines() if text in x]
    return ln


def test_four_predictors_marks_and_counts():
    from inrlens.report.tables import combo_tables, predictions_table, table1

    s = summarise(predictor_rows())
    t1 = {r["source"]: r for r in s["table1"]}
    assert [t1[x]["best_set"] for x in "ABD"] == [[1], [0], [1]] and t1["C"]["best_k"] == 1 and t1["C"]["best_set"] == [0, 1, 2]
    want = {"A": ("agrees", "disagrees", "agrees", "disagrees"), "B": ("disagrees", "agrees", "disagrees", "agrees"),
            "C": ("undecided",) * 4, "D": ("agrees", "agrees", "n/a", "n/a")}
    for src, st in want.items():
        assert (t1[src]["w_status"], t1[src]["h_status"], t1[src]["hc_status"], t1[src]["d_status"]) == st, src
    preds = {p["source"]: p for p in s["predictions"]}
    for src, st in want.items():
        assert (preds[src]["w_status"], preds[src]["h_status"], preds[src]["hc_status"], preds[src]["d_status"]) == st, src

    md = table1(s)
    assert "| argmax sr(W) | argmax sr(H) | argmax sr(H) centred | argmax Δsr |" in md
    assert _line(md, "| A → T |").endswith("| 1 ✓ | 0 ✗ | 1 ✓ | 2 ✗ |")
    assert _line(md, "| B → T |").endswith("| 2 ✗ | 0 ✓ | 1 ✗ | 0 ✓ |")
    assert _line(md, "| C → T |").endswith("| 0 ? | 2 ? | 1 ? | 0 ? |")
    assert _line(md, "| D → T |").endswith("| 1 ✓ | 1 ✓ | — | — |")
    # counts over the 4 pairs; the newer predictors over the 3 pairs whose cohort row records them
    assert "argmax sr(W) agrees in 2/4 (significantly worse in 1, undecided in 1)" in md
    assert "argmax sr(H) agrees in 2/4 (significantly worse in 1, undecided in 1)" in md
    assert "argmax sr(H) centred agrees in 1/3 of the 3 pairs whose cohort row records it (significantly worse in 1, undecided in 1)" in md
    assert "argmax Δsr agrees in 1/3 of the 3 pairs whose cohort row records it (significantly worse in 1, undecided in 1)" in md
    tex = table1(s, latex=True)
    assert "Δ" not in tex and "$\\Delta$sr" in tex and "---" in tex

    pm = predictions_table(s)
    assert _line(pm, "| A | siren |").startswith("| A | siren | 1 ✓ | 0 ✗ | 1 ✓ | 2 ✗ | 1 | {1} | 1.5 / 6.0 / 4.0 | 9.0 / 3.0 / 2.0 | "
                                               "10.0 / 30.0 / 20.0 | 1.4 / 5.5 / 2.0 | 0.1 / 0.5 / 2.0 |")
    assert _line(pm, "| D | siren |").endswith("| 1 ✓ | 1 ✓ | — | — | 1 | {1} | 1.0 / 8.0 / 2.0 | 1.0 / 5.0 / 2.0 | — | — | — |")
    assert ("argmax sr(W) agrees in 2/4 (significantly worse in 1, undecided in 1), argmax sr(H) in 2/4 (significantly worse in 1, "
            "undecided in 1), argmax sr(H) centred in 1/3 of the 3 configurations whose cohort row records it (significantly worse "
            "in 1, undecided in 1), argmax Δsr in 1/3 of the 3 configurations") in pm

    per = combo_tables(s)
    assert "| k | sr(W_k) | sr(H_k) | sr(H_k) centred | Δsr_k |" in per
    assert "| **1** | 6.00 | 3.00 | 30.00 | 0.50 |" in per  # A → T, best k = 1
    assert "| 2 | 7.00 | 1.00 | 15.00 | 0.05 |" in per  # B → T, k = 2
    assert "| **1** | 8.00 | 5.00 | — | — |" in per  # D → T: the row has no centred sr(H), no Δsr
    assert "| no freeze |  |  |  |  |" in per


def test_findings_f2_counts_every_predictor_and_compares_sr_h_definitions():
    from inrlens.report import document

    f2 = document.finding_f2(summarise(predictor_rows()))
    assert ("argmax sr(W) = best depth in 2/4, argmax sr(H) in 2/4, argmax sr(H) centred in 1/3 of the 3 configurations whose "
            "cohort row records it, argmax Δsr in 1/3 of the 3 configurations whose cohort row records it") in f2.measured
    assert ("significantly worse: sr(W) 1, sr(H) 1, sr(H) centred 1, Δsr 1; undecided: sr(W) 1, sr(H) 1, sr(H) centred 1, "
            "Δsr 1") in f2.measured
    assert "A/siren: sr(W)→1, sr(H)→0, sr(H) centred→1, Δsr→2, best 1 set {1}" in f2.measured
    assert "D/siren: sr(W)→1, sr(H)→1, sr(H) centred→—, Δsr→—, best 1 set {1}" in f2.measured
    # agreement rate: paper 4/6 ≈ 0.667; uncentred 2/4 = 0.5 (off by 0.167), centred 1/3 (off by 0.333)
    assert "paper 4/6, uncentred 2/4, centred 1/3 → closer: uncentred" in f2.measured
    # per-layer: the width-256 SIREN cohorts A, B: sr(H₁) uncentred (3 + 4)/2 = 3.5, centred (30 + 28)/2 = 29 vs ≈ 32
    assert ("siren width 256, sr(H) at layer 1: paper ≈ 32, this run uncentred 3.5, centred 29.0 (mean over 2 cohort(s)) → "
            "closer: centred") in f2.measured
    assert f2.verdict == "partly agrees"  # sr(W): 2 agree, 1 disagrees of 4


def test_rows_without_new_predictors_still_report(results, tmp_path):
    """The fixture's cohort rows predate the centred sr(H) and Δsr: every table, the findings and the figure are
    still written, with "—" where those predictors would be."""
    from inrlens.report import document
    from inrlens.report.tables import combo_tables, predictions_table, table1
    from inrlens.store import read_rows

    s = summarise(read_rows(results))
    md = table1(s)
    assert _line(md, "| A → A |").endswith("| 1 ✓ | 0 ✗ | — | — |")
    assert "argmax sr(H) centred: not recorded" in md and "argmax Δsr: not recorded" in md
    assert _line(predictions_table(s), "| A | siren |").endswith("| — | — | — |")
    assert "| **1** | 6.00 | 3.00 | — | — |" in combo_tables(s)
    f2 = document.finding_f2(s)
    assert "argmax sr(H) centred not recorded, argmax Δsr not recorded" in f2.measured
    assert "definitions cannot be compared" in f2.measured and "none are compared" in f2.measured
    out = tmp_path / "rep"
    write_report(results, out)
    assert (out / "stable_rank_siren.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rank_figure_with_every_profile(tmp_path, monkeypatch):
    """Panel A draws sr(W), sr(W) at init (dashed), sr(H) and centred sr(H) with the row's values; panel D (an
    older row) draws only sr(W) and sr(H); the files are written."""
    from inrlens.report import figures

    drawn = []
    save = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, stem: (drawn.append(fig), save(fig, stem))[1])
    paths = figures.rank_profiles(summarise(predictor_rows()), "siren", tmp_path)
    assert [p.suffix for p in paths] == [".png", ".pdf"] and paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = drawn
    where = {tuple(ax.get_position().bounds): ax.get_title().split(":")[0] for ax in fig.axes if ax.get_title()}
    curves: dict[str, list] = {}  # panel's source → [(ydata, linestyle)] over its two y axes (a twin shares the position)
    for ax in fig.axes:
        curves.setdefault(where[tuple(ax.get_position().bounds)], []).extend(
            (list(ln.get_ydata()), ln.get_linestyle()) for ln in ax.get_lines() if len(ln.get_ydata()) == 3)
    sw, sh, shc, w0, _ = PRED_COHORTS["A"]
    assert (sw, "-") in curves["A"] and (w0, "--") in curves["A"] and (sh, "-") in curves["A"] and (shc, "-") in curves["A"]
    assert len(curves["D"]) == 2 and (PRED_COHORTS["D"][0], "-") in curves["D"] and (PRED_COHORTS["D"][1], "-") in curves["D"]


# ------------------------------------------------------------------------------------------------ any backbone
def test_plugin_backbone_reported_after_the_built_ins(tmp_path):
    """A backbone registered by a plug-in is reported like a built-in one: after the built-ins (registry order) in
    every table, with its own figures and a part of "Beyond the paper"; its SAE/ablation rows are found by the
    condition name even when the name holds a separator ("cohort-my-siren" is my-siren, not siren)."""
    import torch

    from inrlens import backbones as B
    from inrlens.report import document
    from inrlens.report.tables import backbone_in, regime_table, table1

    class MySiren(B.Backbone):
        name = "my-siren"
        default_lr = 1e-4

        def hidden(self, cfg, ell, h, w, b):
            return torch.sin(torch.matmul(h, w) + b)

    B.register_backbone(MySiren())
    try:
        rows = []
        for b in ("my-siren", "ffmlp", "siren"):
            for d, bump in (("none", 0.0), (0, 1.0), (1, 2.0)):
                rows += [{"kind": "fit", "key": f"{b}{d}{i}", "backbone": b, "source": "A", "target": "T", "regime": "transfer",
                          "freeze": None if d == "none" else d, "image": f"im{i}", "seed": 0, "status": "ok",
                          "psnr": 30.0 + bump + i + 0.1 * (i % 2)} for i in range(3)]
        s = summarise(rows)
        assert s["backbones"] == ["siren", "ffmlp", "my-siren"]
        assert [ln.split("|")[1].strip() for ln in table1(s).splitlines() if "| A → T |" in ln] == ["siren", "ffmlp", "my-siren"]
        assert [ln.split("|")[1].strip() for ln in regime_table(s).splitlines()[4:]] == ["siren", "ffmlp", "my-siren"]
        assert backbone_in("cohort-my-siren") == "my-siren" and backbone_in("cohort-siren") == "siren" and backbone_in("x") is None
        sae = [{"condition": "cohort-my-siren", "layer": 1, "rho": 0.2, "dead_pct": 1.0}]
        md, _ = document.build(tmp_path, {}, rows, sae, [])
        part = md.split("### my-siren")[1]
        assert "layer 1: ρ 0.200, dead 1.0 % (1 SAE)" in part and "atoms — not compared (no SIREN and FFMLP rows)" in part
        paths = write_report(_results_of(rows, tmp_path), tmp_path / "rep")
        assert {"freeze_sweep_my-siren.png", "freeze_backbones.png"} <= {p.name for p in paths}
    finally:
        B.unregister_backbone("my-siren")


def _results_of(rows, tmp_path):
    d = tmp_path / "res"
    d.mkdir()
    for r in rows:
        append_row(d / "rows.jsonl", r)
    return d


def test_sweep_report_md_states_the_findings_it_computes(results, tmp_path):
    """inrlens report writes report.md beside the tables: the same findings (text and verdict) that
    document.findings computes from the rows, the regime check, and the freeze figures; no SAE sections."""
    from inrlens.report.document import findings
    from inrlens.report.tables import summarise
    from inrlens.store import read_rows

    out = tmp_path / "rep"
    paths = write_report(results, out)
    md = (out / "report.md").read_text()
    assert out / "report.md" in paths
    assert md.startswith("# inrlens freeze-sweep report")
    fs = findings(summarise(read_rows(results)), [], [])
    for f in fs:
        assert f"**{f.verdict}**" in md
    assert "## Regime check" in md and "freeze_sweep_siren.png" in md
    assert "## Sparse autoencoders" not in md and "## Ablations" not in md
