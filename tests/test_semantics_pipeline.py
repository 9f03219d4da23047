"""Atom semantics in the pipeline: semantics.json written by atom_maps_for (against correlate / numpy recomputed
here), MRI runs with tissue maps and the brain-mask record, the atlas caption and the report section."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import tiny_signals
from inrlens.config import DataConfig, NetConfig, TrainConfig
from inrlens.probes.sae import SAEConfig
from inrlens.probes.semantics import (
    BRAIN_THRESHOLD,
    coordinate_maps,
    correlate,
    feature_maps,
    read_semantics,
    semantics_record,
    tissue_maps,
)

SAE = SAEConfig(n=16, k=2, steps=20, batch=128)


def _fit(sigs, out, data=DataConfig()):
    from inrlens.workflows import fit_images

    fit_images(sigs, out, NetConfig(width=12, depth=3), TrainConfig(steps=25, device="cpu"), (0,), data=data, lpips=False,
               checkpoint="root", progress=False)
    return out


def _decompose(inr, images, out, data=DataConfig(), top=5):
    from inrlens.probes.decompose import atom_maps_for, decompose, load_member

    ctx = load_member(inr, images, 0, data, "cpu")
    decompose(ctx, (), SAE, (), out, progress=False)
    return ctx, atom_maps_for(out, top, (), "cpu", steer_top=0)


def _image(ctx):
    h, w = ctx.shape
    return ((ctx.target + 1) / 2).clamp(0, 1).reshape(h, w, -1).numpy().astype(np.float64)


def _r(rec):
    return np.array([[np.nan if v is None else v for v in row] for row in rec["r"]], dtype=np.float64)


def test_atom_maps_for_writes_semantics_equal_to_correlate(tmp_path):
    from PIL import Image

    sig = tiny_signals(1, 16)[0]
    png = tmp_path / "astro0.png"
    Image.fromarray(((sig.pixels.numpy() + 1) * 127.5).round().astype(np.uint8)).save(png)
    inr = _fit([sig], tmp_path / "inr")
    ctx, maps = _decompose(inr, [str(png)], tmp_path / "sae")
    assert len(maps) == 3  # one SAE per hidden layer
    img = _image(ctx)
    feats = {**feature_maps(img), **coordinate_maps(ctx.shape)}
    for m in maps:
        doc = json.loads(m.files.semantics.read_text())
        assert m.files.semantics == m.files.path / "semantics.json" and m.files.semantics.parent == m.files.atoms.parent
        assert (doc["condition"], doc["layer"], doc["n"], doc["k"], doc["image"]) == ("single-siren", m.layer, 16, 2, "astro0")
        assert doc["mri"] is False and set(doc["records"]) == {"all"}
        rec = doc["records"]["all"]
        assert rec["features"] == ["luminance", "red", "green", "blue", "edges", "frequency", "x", "y", "radius"]
        assert rec["atoms"] == m.atoms.tolist()
        names, R = correlate(m.maps.numpy(), feats)
        assert names == rec["features"]
        np.testing.assert_allclose(_r(rec), R, atol=2e-6, equal_nan=True)
        assert rec == json.loads(json.dumps(semantics_record(m.atoms.tolist(), names, R)))
        # one entry by a plain numpy Pearson r over the pixels (atoms that never fire have no r)
        a = m.maps[0].numpy().astype(np.float64).ravel()
        if a.std() > 0:
            ref = np.corrcoef(a, (0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]).ravel())[0, 1]
            assert rec["r"][0][0] == pytest.approx(ref, abs=1e-5)
    # the files are named by SaeRun's layout and read back by read_semantics
    rows = read_semantics([tmp_path / "sae"])
    assert [(r["layer"], r["where"]) for r in rows] == [(0, "all"), (1, "all"), (2, "all")]
    assert all(r["condition"] == "single-siren" and r["backbone"] == "siren" and r["atoms"] == 5 for r in rows)
    # the atlas reads them: per atom its top correlate, per layer the summary in the file's feature order
    from inrlens.report.atlas import collect

    cond = collect([tmp_path / "sae"])[0]
    for lay, m in zip(cond.layers, maps):
        rec = json.loads(m.files.semantics.read_text())["records"]["all"]
        assert [a.id for a in lay.atoms] == rec["atoms"]
        assert [a.top["all"][0] for a in lay.atoms] == rec["top"]
        assert [a.top["all"][1] for a in lay.atoms] == pytest.approx(rec["top_r"])
        assert list(lay.semantics["all"]) == [*rec["features"], "(none)"]
        assert {f: v["top_count"] for f, v in lay.semantics["all"].items()} == {f: v["top_count"] for f, v in rec["summary"].items()}


@pytest.fixture(scope="module")
def mri_slice():
    try:
        tissue_maps(90, (8, 6))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    from inrlens.data import resolve

    data = DataConfig(size=16, square=True)
    sig = next(s for s in resolve("sample:mri", data) if s.name == "mni152_ax090")
    return sig, data


def test_mri_run_gets_tissue_rows_and_the_brain_record(tmp_path, mri_slice):
    sig, data = mri_slice
    inr = _fit([sig], tmp_path / "inr", data)
    ctx, maps = _decompose(inr, ["sample:mri"], tmp_path / "sae", data)
    img = _image(ctx)
    brain = img[..., 0] > BRAIN_THRESHOLD
    assert 0 < brain.sum() < brain.size
    tissue = tissue_maps("mni152_ax090", ctx.shape, square=True)
    feats = {**feature_maps(img), **coordinate_maps(ctx.shape), **tissue}
    for m in maps:
        doc = json.loads(m.files.semantics.read_text())
        assert doc["mri"] is True and set(doc["records"]) == {"all", "brain"} and doc["brain_pixels"] == int(brain.sum())
        full, inside = doc["records"]["all"], doc["records"]["brain"]
        assert full["features"] == inside["features"] == ["luminance", "edges", "frequency", "x", "y", "radius", "gm", "wm", "csf"]
        np.testing.assert_allclose(_r(full), correlate(m.maps.numpy(), feats)[1], atol=2e-6, equal_nan=True)
        np.testing.assert_allclose(_r(inside), correlate(m.maps.numpy(), feats, mask=brain)[1], atol=2e-6, equal_nan=True)
        assert set(full["summary"]) >= {"gm", "wm", "csf", "(none)"}
    assert {r["where"] for r in read_semantics([tmp_path / "sae"])} == {"all", "brain"}

    # the recorded spec decides, not the name: the same slice as a PNG called mni152_ax090.png gets no tissue maps
    from PIL import Image

    png = tmp_path / "mni152_ax090.png"
    Image.fromarray((img[..., 0] * 255).round().astype(np.uint8)).save(png)
    _, maps2 = _decompose(inr, [str(png)], tmp_path / "sae_png", data)
    doc = json.loads(maps2[0].files.semantics.read_text())
    assert doc["mri"] is False and set(doc["records"]) == {"all"}
    assert "gm" not in doc["records"]["all"]["features"]
