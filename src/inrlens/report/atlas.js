// Atom atlas: condition → layer → atom browser over the JSON block #atlas-data (no network, no libraries).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("atlas-data").textContent);
  const $ = (id) => document.getElementById(id);
  const state = { c: 0, l: 0, sort: "magnitude", atom: null, alpha: 2 };

  const fmt = (v, d) => (v === null || v === undefined || !isFinite(v)) ? "n/a" : Number(v).toFixed(d);
  const pct = (v) => (v === null || v === undefined || !isFinite(v)) ? "n/a" : (100 * v).toFixed(1) + " %";

  // Sort keys, largest first; atoms without a value (never ablated) go last, ties by id.
  const KEYS = {
    magnitude: (a) => a.magnitude,
    drop: (a) => a.psnr_drop,
    firing: (a) => a.firing_rate,
    id: (a) => -a.id,
  };
  function sorted(atoms, key) {
    const f = KEYS[key];
    return atoms.slice().sort((a, b) => {
      const va = f(a), vb = f(b);
      const na = va === null || !isFinite(va), nb = vb === null || !isFinite(vb);
      if (na !== nb) return na ? 1 : -1;
      if (!na && va !== vb) return vb - va;
      return a.id - b.id;
    });
  }

  const cond = () => data.conditions[state.c];
  const layer = () => cond().layers[state.l];
  const order = () => sorted(layer().atoms, state.sort);

  function option(sel, value, text) {
    const o = document.createElement("option");
    o.value = String(value);
    o.textContent = text;
    sel.appendChild(o);
  }

  function fillConditions() {
    const sel = $("condition");
    sel.innerHTML = "";
    data.conditions.forEach((c, i) => option(sel, i, c.name + (c.image ? " (" + c.image + ")" : "")));
    sel.value = String(state.c);
  }

  function fillLayers() {
    const sel = $("layer");
    sel.innerHTML = "";
    cond().layers.forEach((l, i) => option(sel, i, "layer " + l.layer + " (n=" + l.n + ", k=" + l.k + ")"));
    sel.value = String(state.l);
  }

  function layerStats() {
    const s = layer().stats || {};
    const parts = [];
    if ("r2" in s) parts.push("R² " + fmt(s.r2, 3));
    if ("alive_pct" in s) parts.push("alive " + fmt(s.alive_pct, 1) + " %");
    if ("rho" in s) parts.push("ρ " + fmt(s.rho, 3));
    if ("psnr_sub" in s) parts.push("PSNR with ĥ " + fmt(s.psnr_sub, 2) + " dB");
    if ("psnr_inr" in s) parts.push("INR " + fmt(s.psnr_inr, 2) + " dB");
    $("layer-stats").textContent = parts.length ? parts.join(" · ") : "no SAE diagnostics recorded";
    layerSemantics();
  }

  // Atom semantics of the layer: per feature the mean |r| over its atoms and how many atoms it is the top correlate of.
  function cell(tr, tag, text) {
    const c = document.createElement(tag);
    c.textContent = text;
    tr.appendChild(c);
  }

  function layerSemantics() {
    const sem = layer().sem, box = $("layer-sem"), table = $("layer-sem-table");
    table.innerHTML = "";
    if (!sem) {
      box.classList.add("none");
      $("layer-sem-note").textContent = "";
      return;
    }
    box.classList.remove("none");
    const head = document.createElement("tr");
    cell(head, "th", "feature");
    sem.where.forEach((w) => {
      cell(head, "th", "mean |r|" + (w ? " " + w : ""));
      cell(head, "th", "top" + (w ? " " + w : ""));
    });
    table.appendChild(head);
    sem.rows.forEach((row) => {
      const tr = document.createElement("tr");
      cell(tr, "td", row.feature);
      row.cells.forEach((c) => {
        cell(tr, "td", c[0] === null ? "—" : fmt(c[0], 2));
        cell(tr, "td", c[1] === null || c[1] === undefined ? "—" : String(c[1]));
      });
      table.appendChild(tr);
    });
    $("layer-sem-note").textContent = sem.note;
  }

  function listValue(a) {
    if (state.sort === "drop") return a.psnr_drop === null ? "—" : fmt(a.psnr_drop, 2) + " dB";
    if (state.sort === "firing") return pct(a.firing_rate);
    return fmt(a.magnitude, 4);
  }

  function fillList() {
    const ol = $("atom-list");
    ol.innerHTML = "";
    order().forEach((a, i) => {
      const li = document.createElement("li");
      li.dataset.atom = String(a.id);
      const r = document.createElement("span");
      r.className = "rank";
      r.textContent = String(i + 1);
      const img = document.createElement("img");
      img.src = a.map;
      img.alt = "atom " + a.id;
      const name = document.createElement("span");
      name.textContent = "atom " + a.id;
      const v = document.createElement("span");
      v.className = "val";
      v.textContent = listValue(a);
      li.append(r, img, name, v);
      li.addEventListener("click", () => select(a.id));
      ol.appendChild(li);
    });
  }

  // Steering: the atom's renders at its scales α, plus α = 1 (the layer's unsteered reconstruction).
  function steerAlphas(a) {
    if (!a.steer) return [];
    const xs = a.steer.alphas.slice();
    if (layer().recon && xs.indexOf(1) < 0) xs.push(1);
    return xs.sort((x, y) => x - y);
  }

  function alphaLabel(x) {
    return "α = " + x + (x === 1 ? " (original)" : x === 0 ? " (removed)" : "");
  }

  function showAlpha(a) {
    const s = a.steer, x = state.alpha, i = s.alphas.indexOf(x);
    for (const b of $("steer-alphas").children) {
      const on = b.dataset.alpha === String(x);
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    }
    const img = $("steer-img"), dm = $("steer-diff");
    if (i < 0) {  // α = 1: nothing changes
      img.src = layer().recon;
      dm.removeAttribute("src");
      dm.classList.add("empty");
      $("steer-img-cap").textContent = "α = 1: the original reconstruction f";
      $("steer-diff-cap").textContent = "no difference at α = 1";
      return;
    }
    img.src = s.img[i];
    dm.src = s.diff[i];
    dm.classList.remove("empty");
    $("steer-img-cap").textContent = "steered f′ at " + alphaLabel(x) + " · PSNR vs f " + fmt(s.psnr_inr[i], 2) + " dB, vs image " + fmt(s.psnr_img[i], 2) + " dB";
    $("steer-diff-cap").textContent = "|f′ − f| (channel mean), scale 0 … " + fmt(s.diff_max, 4) + " shared by every α of this atom";
  }

  function showSteer(a) {
    const bar = $("steer-alphas");
    bar.innerHTML = "";
    const xs = steerAlphas(a);
    if (!xs.length) {
      $("steer").classList.add("none");
      $("steer-note").textContent = "no steering renders for this atom (they are stored for the strongest atoms of each SAE)";
      $("steer-img").removeAttribute("src");
      $("steer-diff").removeAttribute("src");
      return;
    }
    $("steer").classList.remove("none");
    $("steer-note").textContent = "α = 1 keeps the atom, 0 removes it, 2 doubles it; choose α:";
    if (xs.indexOf(state.alpha) < 0) state.alpha = xs.indexOf(2) >= 0 ? 2 : xs[xs.length - 1];
    xs.forEach((x) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.alpha = String(x);
      b.textContent = alphaLabel(x);
      b.addEventListener("click", () => { state.alpha = x; showAlpha(a); setHash(a.id); });
      bar.appendChild(b);
    });
    showAlpha(a);
  }

  function setHash(id) {
    location.hash = "c=" + state.c + "&l=" + state.l + "&a=" + id + "&s=" + state.sort + "&x=" + state.alpha;
  }

  function select(id) {
    const atoms = layer().atoms;
    const a = atoms.find((x) => x.id === id) || order()[0];
    if (!a) return;
    state.atom = a.id;
    $("atom-title").textContent = cond().name + " · layer " + layer().layer + " · atom " + a.id;
    $("atom-map").src = a.map;
    $("atom-map-cap").textContent = "atom map z_j(x), scale 0 … " + fmt(a.map_max, 4);
    $("atom-sem").textContent = a.sem || "";
    const em = $("error-map");
    if (a.err) {
      em.src = a.err;
      em.classList.remove("empty");
      $("error-map-cap").textContent = "ablation error |f′ − f|, scale 0 … " + fmt(a.err_max, 4);
    } else {
      em.removeAttribute("src");
      em.classList.add("empty");
      $("error-map-cap").textContent = "not ablated";
    }
    $("stat-firing").textContent = pct(a.firing_rate);
    $("stat-magnitude").textContent = fmt(a.magnitude, 4);
    $("stat-drop").textContent = a.psnr_drop === null ? "not ablated" : fmt(a.psnr_drop, 2);
    $("stat-locality").textContent = a.locality === null ? "n/a" : fmt(a.locality, 3);
    $("stat-region").textContent = a.region_frac === null ? "n/a" : pct(a.region_frac);
    for (const li of $("atom-list").children) li.classList.toggle("selected", li.dataset.atom === String(a.id));
    const cur = $("atom-list").querySelector("li.selected");
    if (cur && cur.scrollIntoView) cur.scrollIntoView({ block: "nearest" });
    showSteer(a);
    setHash(a.id);
  }

  function step(delta) {
    const ids = order().map((a) => a.id);
    const i = ids.indexOf(state.atom);
    if (!ids.length) return;
    select(ids[Math.min(ids.length - 1, Math.max(0, i + delta))]);
  }

  function showLayer(keepAtom) {
    fillLayers();
    layerStats();
    fillList();
    const first = order()[0];
    select(keepAtom !== undefined && keepAtom !== null ? keepAtom : (first ? first.id : null));
  }

  function fromHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    const c = parseInt(h.get("c"), 10), l = parseInt(h.get("l"), 10), a = parseInt(h.get("a"), 10);
    if (c >= 0 && c < data.conditions.length) state.c = c;
    if (l >= 0 && l < cond().layers.length) state.l = l;
    if (h.get("s") in KEYS) state.sort = h.get("s");
    const x = parseFloat(h.get("x"));
    if (isFinite(x)) state.alpha = x;
    return isFinite(a) ? a : null;
  }

  function init() {
    if (!data.conditions.length) {
      $("atom-title").textContent = "no atoms in this atlas";
      return;
    }
    const a = fromHash();
    fillConditions();
    $("sort").value = state.sort;
    $("condition").addEventListener("change", (e) => { state.c = +e.target.value; state.l = Math.min(state.l, cond().layers.length - 1); showLayer(null); });
    $("layer").addEventListener("change", (e) => { state.l = +e.target.value; showLayer(null); });
    $("sort").addEventListener("change", (e) => { state.sort = e.target.value; fillList(); const f = order()[0]; select(f ? f.id : null); });
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    document.addEventListener("keydown", (e) => {
      if (e.target && e.target.tagName === "SELECT") return;
      if (e.key === "ArrowRight") { step(1); e.preventDefault(); }
      else if (e.key === "ArrowLeft") { step(-1); e.preventDefault(); }
      else if (e.key === "ArrowDown" && state.l < cond().layers.length - 1) { state.l++; showLayer(null); e.preventDefault(); }
      else if (e.key === "ArrowUp" && state.l > 0) { state.l--; showLayer(null); e.preventDefault(); }
    });
    showLayer(a);
  }

  window.atlas = { data, state, sorted, select };  // exposed for tests and the console
  init();
})();
