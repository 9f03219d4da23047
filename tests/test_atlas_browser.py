"""The atom atlas: page content (no browser) and behaviour in a real headless Chromium (playwright)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil

import numpy as np
import pytest

from inrlens.report.atlas import Atom, Condition, Layer, atlas_data, png_uri, write_atlas


def _blob(h: int, w: int, cy: float, cx: float, s: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s)).astype(np.float32)


def make_conditions() -> list[Condition]:
    """Two conditions × two layers × 6 atoms with distinct maps; 3 atoms per layer ablated."""
    rng = np.random.default_rng(0)
    conds = []
    for ci, name in enumerate(["cohort-siren", "cohort-ffmlp </script>"]):
        layers = []
        for ell in range(2):
            atoms = []
            for j in range(6):
                aid = 100 * ell + 7 * j + ci
                m = _blob(16, 16, rng.uniform(2, 14), rng.uniform(2, 14), 1.5 + j)
                abl = j % 2 == 0
                atoms.append(Atom(aid, float(rng.uniform(0.01, 0.9)), float(rng.uniform(0.001, 0.5)), m,
                                  float(rng.uniform(0.1, 12.0)) if abl else None, float(rng.uniform(0.5, 1.0)) if abl else None,
                                  float(rng.uniform(0.01, 0.5)) if abl else None, (m * rng.uniform(0.1, 1.0)) if abl else None))
            layers.append(Layer(ell, 64, 4, atoms, {"r2": 0.9 - 0.1 * ell, "alive_pct": 80.0, "rho": 0.2}))
        conds.append(Condition(name, layers, f"img{ci}", (16, 16)))
    return conds


def test_png_uri_colour_maps_values():
    from matplotlib import colormaps
    from PIL import Image

    a = np.zeros((4, 5), np.float32)
    a[1, 2] = 2.0
    a[3, 4] = 1.0
    uri = png_uri(a, "viridis")
    assert uri.startswith("data:image/png;base64,")
    img = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert img.shape == (4, 5, 3)
    ref = (colormaps["viridis"](np.array([0.0, 0.5, 1.0]))[:, :3] * 255 + 0.5).astype(np.uint8)
    assert (img[0, 0] == ref[0]).all() and (img[3, 4] == ref[1]).all() and (img[1, 2] == ref[2]).all()


def test_page_is_self_contained(tmp_path):
    conds = make_conditions()
    path = write_atlas(conds, tmp_path / "atlas")
    html = path.read_text()
    # offline: no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "http://" not in html and "https://" not in html
    # the JSON block survives a '</script>' inside a name and round-trips
    m = re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', html, re.S)
    assert m is not None
    data = json.loads(m.group(1))
    assert data == json.loads(json.dumps(atlas_data(conds)))
    assert data["conditions"][1]["name"] == "cohort-ffmlp </script>"
    n_imgs = sum(1 + (a.err_map is not None) for c in conds for lay in c.layers for a in lay.atoms)
    assert html.count("data:image/png;base64,") == n_imgs


def test_write_atlas_refuses_nothing(tmp_path):
    with pytest.raises(ValueError, match="nothing to show"):
        write_atlas([], tmp_path)
    assert not (tmp_path / "index.html").exists()


# --------------------------------------------------------------------------------------- browser
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _browser_or_skip() -> str:
    exe = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if exe is None:
        pytest.skip("no chromium installed (scripts/ci_services.sh installs Debian's chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("python package 'playwright' is not installed (pip install -e '.[test]')")
    return exe


@pytest.mark.browser
def test_atlas_in_headless_chromium(tmp_path):
    exe = _browser_or_skip()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    conds = make_conditions()
    path = write_atlas(conds, tmp_path / "atlas")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: errors.append(f"network request: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
            page.goto(path.as_uri())
            page.wait_for_selector("#atom-list li")

            lay0 = conds[0].layers[0]
            by_mag = [a.id for a in sorted(lay0.atoms, key=lambda a: (-a.magnitude, a.id))]
            items = lambda: [int(x) for x in page.eval_on_selector_all("#atom-list li", "els => els.map(e => e.dataset.atom)")]  # noqa: E731
            assert items() == by_mag
            assert page.inner_text("#atom-title").endswith(f"atom {by_mag[0]}")

            # clicking an atom shows it: title, stats and image change
            target = next(a for a in lay0.atoms if a.id == by_mag[3])
            old_src = page.get_attribute("#atom-map", "src")
            page.click(f'#atom-list li[data-atom="{target.id}"]')
            assert page.inner_text("#atom-title").endswith(f"atom {target.id}")
            assert page.inner_text("#stat-magnitude") == f"{target.magnitude:.4f}"
            assert page.inner_text("#stat-firing") == f"{100 * target.firing_rate:.1f} %"
            assert page.get_attribute("#atom-map", "src") != old_src
            assert page.get_attribute("#atom-list li.selected", "data-atom") == str(target.id)

            # sort by PSNR drop: ablated atoms by decreasing drop, then the others by id
            page.select_option("#sort", "drop")
            abl = sorted((a for a in lay0.atoms if a.psnr_drop is not None), key=lambda a: -a.psnr_drop)
            rest = sorted(a.id for a in lay0.atoms if a.psnr_drop is None)
            assert items() == [a.id for a in abl] + rest
            top = abl[0]
            assert page.inner_text("#atom-title").endswith(f"atom {top.id}")
            assert page.inner_text("#stat-drop") == f"{top.psnr_drop:.2f}"
            assert page.get_attribute("#error-map", "src").startswith("data:image/png;base64,")

            # next / prev buttons walk the sorted list
            page.click("#next")
            assert page.inner_text("#atom-title").endswith(f"atom {abl[1].id}")
            page.click("#prev")
            assert page.inner_text("#atom-title").endswith(f"atom {top.id}")
            # an atom that was not ablated says so
            page.click(f'#atom-list li[data-atom="{rest[0]}"]')
            assert page.inner_text("#stat-drop") == "not ablated"

            # switching condition and layer re-populates the list from that layer's atoms
            page.select_option("#condition", "1")
            page.select_option("#layer", "1")
            lay = conds[1].layers[1]
            assert sorted(items()) == sorted(a.id for a in lay.atoms)
            assert "cohort-ffmlp </script> · layer 1" in page.inner_text("#atom-title")
            assert "R² 0.800" in page.inner_text("#layer-stats")

            shot = tmp_path / "atlas.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    img = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert img.shape[0] >= 700 and img.shape[1] >= 1000
    assert img.std() > 20.0  # not blank: text, colour maps and controls on a light page
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100


# --------------------------------------------------------------------------------------- hostile names
HOSTILE = ["<!--<script>x", "</script><script>alert(1)</script>", "a & b > c < d", "line\u2028sep\u2029para", "]]><!-- -->",
           "<img src=x onerror=alert(1)>", "__ATLAS_TITLE__ and __ATLAS_DATA__", "/*ATLAS_JS*/", "quote \" and ' and \\", "<\\/x>",
           "café 画像 \U0001F600"]


def hostile_conditions() -> list[Condition]:
    conds = make_conditions()
    conds[0].name, conds[0].image = "<!--<script>x", "<img src=x onerror=alert(1)>.png"
    conds[1].name, conds[1].image = "</script><!-- a & b", "__ATLAS_TITLE__ \u2028 <!--"
    return conds


def _data_block(html: str) -> str:
    m = re.search(r'<script type="application/json" id="atlas-data">(.*?)</script>', html, re.S)
    assert m is not None
    return m.group(1)


def test_script_json_escapes_what_html_and_js_parsers_see():
    from inrlens.report.atlas import script_json

    for s in HOSTILE:
        for value in (s, {"name": s, s: [s, 1.5, None]}):
            blob = script_json(value)
            assert json.loads(blob) == value  # the same data after parsing
            for ch in "<>&\u2028\u2029":
                assert ch not in blob, (ch, blob)
    # the escapes themselves, spelled out
    assert script_json("<!--&-->") == '"\\u003c!--\\u0026--\\u003e"'
    assert script_json("\u2028\u2029") == '"\\u2028\\u2029"'


def test_html_text_escapes_markup():
    from inrlens.report.atlas import html_text

    assert html_text("<!--<script>\"x\" & 'y'") == "&lt;!--&lt;script&gt;&quot;x&quot; &amp; &#x27;y&#x27;"


def test_hostile_names_and_title_stay_data(tmp_path):
    conds = hostile_conditions()
    title = "</title><script>alert(1)</script> __ATLAS_DATA__"
    html = write_atlas(conds, tmp_path / "atlas", title).read_text()
    # the page's own markup is intact: exactly the two script blocks and one title, nothing injected
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert html.count("<title>") == 1 and html.count("</title>") == 1
    assert "<!--" not in html.split("<style>", 1)[1]  # no comment opener anywhere after the head's start
    assert "onerror=" not in html.replace("onerror=alert(1)", "")  # only inside the (escaped) data
    block = _data_block(html)
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert data == json.loads(json.dumps(atlas_data(conds, title)))
    assert [c["name"] for c in data["conditions"]] == ["<!--<script>x", "</script><!-- a & b"]
    assert [c["image"] for c in data["conditions"]] == ["<img src=x onerror=alert(1)>.png", "__ATLAS_TITLE__ \u2028 <!--"]
    assert data["title"] == title
    esc = "&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt; __ATLAS_DATA__"
    assert f"<title>{esc}</title>" in html and f"<h1>{esc}</h1>" in html


def test_atlas_js_inserts_data_as_text_only():
    """atlas.js writes data strings with textContent; innerHTML only ever clears an element."""
    from importlib import resources

    js = resources.files("inrlens.report").joinpath("atlas.js").read_text()
    assert re.findall(r"innerHTML\s*=\s*([^;]+);", js) == ['""'] * js.count("innerHTML")
    for sink in ("outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
    assert "</script" not in js.lower() and "<!--" not in js


def test_embedded_json_parses_the_same_in_javascript(tmp_path):
    """node's JSON.parse reads the data block to the same value as Python (skipped without node)."""
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    block = _data_block(write_atlas(hostile_conditions(), tmp_path / "atlas", "<t>").read_text())
    (tmp_path / "block.json").write_text(block, encoding="utf-8")
    script = ("const fs=require('fs');const d=JSON.parse(fs.readFileSync(process.argv[1],'utf8'));"
              "process.stdout.write(JSON.stringify([d.title, d.conditions.map(c=>[c.name,c.image])]))")
    out = subprocess.run([node, "-e", script, str(tmp_path / "block.json")], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == ["<t>", [["<!--<script>x", "<img src=x onerror=alert(1)>.png"],
                                              ["</script><!-- a & b", "__ATLAS_TITLE__ \u2028 <!--"]]]


@pytest.mark.browser
def test_hostile_names_in_headless_chromium(tmp_path):
    exe = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    conds = hostile_conditions()
    path = write_atlas(conds, tmp_path / "atlas", "<!--<script>x atlas")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(path.as_uri())
            page.wait_for_selector("#atom-list li")
            assert page.title() == "<!--<script>x atlas"
            assert page.inner_text("h1") == "<!--<script>x atlas"
            assert page.inner_text("#atom-title").startswith("<!--<script>x · layer 0 · atom ")
            opts = page.eval_on_selector_all("#condition option", "els => els.map(e => e.textContent)")
            assert opts == ["<!--<script>x (<img src=x onerror=alert(1)>.png)", "</script><!-- a & b (__ATLAS_TITLE__ \u2028 <!--)"]
            assert page.eval_on_selector_all("img[src='x']", "els => els.length") == 0  # no element made from a name
            assert page.evaluate("document.scripts.length") == 2
            page.select_option("#condition", "1")
            assert page.inner_text("#atom-title").startswith("</script><!-- a & b · layer 0 · atom ")
        finally:
            browser.close()
    assert errors == []


# --------------------------------------------------------------------------------------- steering control
def steering_conditions() -> list[Condition]:
    """make_conditions with steering renders (α = 0, 0.5, 2, 4) on the first two atoms of every layer of condition 0."""
    from inrlens.report.atlas import Steering

    rng = np.random.default_rng(1)
    conds = make_conditions()
    for lay in conds[0].layers:
        lay.recon = rng.uniform(0, 1, (16, 16, 3)).astype(np.float32)
        for a in lay.atoms[:2]:
            imgs = np.stack([np.clip(lay.recon + (s - 1) * 0.2 * a.map[..., None], 0, 1) for s in (0.0, 0.5, 2.0, 4.0)])
            a.steer = Steering([0.0, 0.5, 2.0, 4.0], imgs, np.abs(imgs - lay.recon).mean(-1),
                               [20.0, 30.0, 25.0, 15.0], [18.0, 19.0, 17.0, 12.0])
    return conds


def test_steering_renders_are_embedded(tmp_path):
    conds = steering_conditions()
    html = write_atlas(conds, tmp_path / "atlas").read_text()
    data = json.loads(_data_block(html))
    lay = data["conditions"][0]["layers"][0]
    st = lay["atoms"][0]["steer"]
    assert st["alphas"] == [0.0, 0.5, 2.0, 4.0] and len(st["img"]) == len(st["diff"]) == 4
    a0 = conds[0].layers[0].atoms[0]
    assert st["diff_max"] == pytest.approx(float(a0.steer.diffs.max()))
    assert st["psnr_inr"] == [20.0, 30.0, 25.0, 15.0]
    assert [a["steer"] is None for a in lay["atoms"]] == [False, False] + [True] * 4
    assert data["conditions"][1]["layers"][0]["recon"] is None
    n_imgs = sum(1 + (a.err_map is not None) + (8 if a.steer is not None else 0) for c in conds for lay in c.layers for a in lay.atoms)
    n_imgs += sum(lay.recon is not None for c in conds for lay in c.layers)
    assert html.count("data:image/png;base64,") == n_imgs


@pytest.mark.browser
def test_steering_control_in_headless_chromium(tmp_path):
    exe = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    conds = steering_conditions()
    path = write_atlas(conds, tmp_path / "atlas")
    lay = atlas_data(conds)["conditions"][0]["layers"][0]
    steered = [a for a in lay["atoms"] if a["steer"]]
    plain = next(a for a in lay["atoms"] if not a["steer"])
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: errors.append(f"network request: {r.url}") if not r.url.startswith(("file:", "data:")) else None)
            page.goto(path.as_uri())
            page.wait_for_selector("#atom-list li")
            a = steered[0]
            page.click(f'#atom-list li[data-atom="{a["id"]}"]')
            labels = page.eval_on_selector_all("#steer-alphas button", "els => els.map(e => e.textContent)")
            assert labels == ["α = 0 (removed)", "α = 0.5", "α = 1 (original)", "α = 2", "α = 4"]
            src = lambda sel: page.get_attribute(sel, "src")  # noqa: E731
            # α = 2 is shown first
            assert page.get_attribute("#steer-alphas button.on", "data-alpha") == "2"
            assert src("#steer-img") == a["steer"]["img"][2] and src("#steer-diff") == a["steer"]["diff"][2]
            # each button swaps the render and its difference map
            seen = {src("#steer-img")}
            for i, alpha in enumerate(["0", "0.5", "2", "4"]):
                page.click(f'#steer-alphas button[data-alpha="{alpha}"]')
                assert src("#steer-img") == a["steer"]["img"][i] and src("#steer-diff") == a["steer"]["diff"][i]
                assert page.get_attribute("#steer-alphas button.on", "data-alpha") == alpha
                assert page.get_attribute(f'#steer-alphas button[data-alpha="{alpha}"]', "aria-pressed") == "true"
                seen.add(src("#steer-img"))
            assert len(seen) == 4
            assert "0 … " in page.inner_text("#steer-diff-cap") and "PSNR vs f 15.00 dB" in page.inner_text("#steer-img-cap")
            # α = 1: the original reconstruction, no difference map
            before = src("#steer-img")
            page.click('#steer-alphas button[data-alpha="1"]')
            assert src("#steer-img") == lay["recon"] != before and src("#steer-diff") is None
            # the chosen α stays when moving to another steered atom
            page.click('#steer-alphas button[data-alpha="0.5"]')
            page.click(f'#atom-list li[data-atom="{steered[1]["id"]}"]')
            assert src("#steer-img") == steered[1]["steer"]["img"][1]
            # an atom without renders hides the control and says so
            page.click(f'#atom-list li[data-atom="{plain["id"]}"]')
            assert page.eval_on_selector("#steer", "e => e.classList.contains('none')")
            assert page.eval_on_selector_all("#steer-alphas button", "els => els.length") == 0
            assert "no steering renders" in page.inner_text("#steer-note")
            # a condition without any renders works too
            page.select_option("#condition", "1")
            assert page.eval_on_selector("#steer", "e => e.classList.contains('none')")
        finally:
            browser.close()
    assert errors == []


# --------------------------------------------------------------------------------------- atom semantics
def semantics_conditions() -> list[Condition]:
    """make_conditions with semantics on condition 0: top correlates per atom (layer 0 also inside a brain mask,
    one atom without any r) and the layer summary; condition 1 has none."""
    conds = make_conditions()
    feats = ["luminance", "edges", "frequency"]
    for ell, lay in enumerate(conds[0].layers):
        for i, a in enumerate(lay.atoms):
            a.top = {"all": (feats[i % 3], (-1) ** i * (0.71 - 0.1 * i))}
            if ell == 0:
                a.top["brain"] = ("edges", 0.3) if i else (None, None)
        lay.semantics = {"all": {"luminance": {"mean_abs_r": 0.5, "top_count": 2}, "edges": {"mean_abs_r": 0.25, "top_count": 2},
                                 "frequency": {"mean_abs_r": None, "top_count": 2}, "(none)": {"mean_abs_r": None, "top_count": 0}}}
        if ell == 0:
            lay.semantics["brain"] = {"luminance": {"mean_abs_r": 0.125, "top_count": 0}, "edges": {"mean_abs_r": 0.3, "top_count": 5},
                                      "frequency": {"mean_abs_r": 0.05, "top_count": 0}, "(none)": {"mean_abs_r": None, "top_count": 1}}
    return conds


def test_semantics_caption_and_table_are_embedded(tmp_path):
    from inrlens.report.atlas import SEMANTICS_NOTE, semantic_caption, signed

    assert signed(-0.7149) == "−0.71" and signed(0.3) == "+0.30" and signed(None) == "n/a" and signed(float("nan")) == "n/a"
    assert semantic_caption({"all": ("edges", -0.71)}) == "top: edges −0.71"
    assert semantic_caption({"all": ("gm", 0.5), "brain": ("wm", 0.551)}) == "top: gm +0.50 · top in brain: wm +0.55"
    assert semantic_caption({"all": (None, None)}) == "top: none (the map is constant)" and semantic_caption({}) == ""
    conds = semantics_conditions()
    data = json.loads(_data_block(write_atlas(conds, tmp_path / "atlas").read_text()))
    lay0 = data["conditions"][0]["layers"][0]
    assert lay0["atoms"][0]["sem"] == "top: luminance +0.71 · top in brain: none (the map is constant)"
    assert lay0["atoms"][1]["sem"] == "top: edges −0.61 · top in brain: edges +0.30"
    assert data["conditions"][0]["layers"][1]["atoms"][1]["sem"] == "top: edges −0.61"
    assert lay0["sem"] == {"where": ["", "in brain"], "note": SEMANTICS_NOTE, "rows": [
        {"feature": "luminance", "cells": [[0.5, 2], [0.125, 0]]}, {"feature": "edges", "cells": [[0.25, 2], [0.3, 5]]},
        {"feature": "frequency", "cells": [[None, 2], [0.05, 0]]}, {"feature": "(none)", "cells": [[None, 0], [None, 1]]}]}
    assert "smooth maps inflate |r|" in SEMANTICS_NOTE
    assert data["conditions"][1]["layers"][0]["sem"] is None and data["conditions"][1]["layers"][0]["atoms"][0]["sem"] == ""


@pytest.mark.browser
def test_semantics_caption_in_headless_chromium(tmp_path):
    exe = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    conds = semantics_conditions()
    path = write_atlas(conds, tmp_path / "atlas")
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.goto(path.as_uri())
            page.wait_for_selector("#atom-list li")
            a1 = conds[0].layers[0].atoms[1]
            page.click(f'#atom-list li[data-atom="{a1.id}"]')
            assert page.inner_text("#atom-sem") == "top: edges −0.61 · top in brain: edges +0.30"
            rows = page.eval_on_selector_all("#layer-sem-table tr", "els => els.map(r => [...r.children].map(c => c.textContent))")
            assert rows == [["feature", "mean |r|", "top", "mean |r| in brain", "top in brain"],
                            ["luminance", "0.50", "2", "0.13", "0"], ["edges", "0.25", "2", "0.30", "5"],
                            ["frequency", "—", "2", "0.05", "0"], ["(none)", "—", "0", "—", "1"]]
            assert "inflate |r|" in page.inner_text("#layer-sem-note")
            page.select_option("#layer", "1")
            a = conds[0].layers[1].atoms[2]
            page.click(f'#atom-list li[data-atom="{a.id}"]')
            assert page.inner_text("#atom-sem") == "top: frequency +0.51"
            # a condition without semantics hides the table and shows no caption
            page.select_option("#condition", "1")
            assert page.eval_on_selector("#layer-sem", "e => e.classList.contains('none')")
            assert page.inner_text("#atom-sem") == ""
        finally:
            browser.close()
    assert errors == []
