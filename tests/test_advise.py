"""`inrlens advise`: foreign models read into stacks equal the torch modules they came from; profiles equal
rank.profile and numpy; heads of STRAINER-style layouts; the init estimate; one-line errors; --verify."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from inrlens import advise as adv
from inrlens.cli import main
from inrlens.config import NetConfig
from inrlens.data import grid
from inrlens.nets import Stack, cohort_stack
from inrlens.probes.rank import profile, weight_ranks
from inrlens.store import save_stack


def np_sr(m: np.ndarray) -> float:
    s = np.linalg.svd(m.astype(np.float64), compute_uv=False)
    return float((s**2).sum() / s.max() ** 2)


class Sine(nn.Module):
    def __init__(self, w0: float):
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)


def tiny_siren(width: int = 8, hidden: int = 3, out: int = 3, w0_first: float = 20.0, w0: float = 30.0, seed: int = 0) -> nn.Sequential:
    """A hand-built SIREN: Linear, Sine, …, Linear; weights spread a little away from any init scheme."""
    torch.manual_seed(seed)
    mods: list[nn.Module] = [nn.Linear(2, width), Sine(w0_first)]
    for _ in range(hidden - 1):
        mods += [nn.Linear(width, width), Sine(w0)]
    mods.append(nn.Linear(width, out))
    net = nn.Sequential(*mods)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(0.3)
    return net


def linears_of(net: nn.Module) -> list[nn.Linear]:
    return [m for m in net.modules() if isinstance(m, nn.Linear)]


# ------------------------------------------------------------------------------------------- inrlens folders
def _perturbed_cohort(tmp_path, seed=4, backbone="siren"):
    cfg = NetConfig(backbone=backbone, width=8, depth=3, ff_features=4, ff_sigma=2.0)
    st = cohort_stack(cfg, 3, 2, seed)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():  # "training": a change the init seed cannot explain
        for w in st.weights:
            w.add_(0.2 * torch.randn(w.shape, generator=g))
    return cfg, st


def test_inrlens_cohort_gives_the_same_profile_as_rank_profile(tmp_path, capsys):
    cfg, st = _perturbed_cohort(tmp_path)
    folder = tmp_path / "cohort"
    save_stack(st, folder, {"regime": "cohort", "members": ["a", "b"]})
    (folder / "run.json").write_text(json.dumps({"cmd": "cohort", "seed": 4}))
    model = adv.load_model(folder)
    assert model.format == "inrlens" and model.init_seed == 4 and "run.json" in model.init_seed_from
    a = adv.advise(model, (8, 8))
    ref = profile(st, (8, 8), init_seed=4)
    assert a.profile == ref
    assert a.k == ref.k_w and a.init == {"kind": "seed", "seed": 4, "from": model.init_seed_from}
    # the command prints the table and the recommendation and writes the same numbers
    out = tmp_path / "advice"
    assert main(["advise", str(folder), "--grid", "8", "8", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"k* = argmax sr(W) = {ref.k_w}" in text and "seed 4" in text
    j = json.loads((out / "advise.json").read_text())
    assert j["profile"]["sr_w"] == pytest.approx(ref.sr_w, rel=1e-12)
    assert j["profile"]["sr_h_centred"] == pytest.approx(ref.sr_h_centred, rel=1e-12)
    assert j["profile"]["delta_sr"] == pytest.approx(ref.delta_sr, rel=1e-12)
    assert j["recommendation"]["k"] == ref.k_w and j["backbone"] == "siren" and j["verify"] is None
    assert (out / "advise.md").read_text().startswith("# inrlens advise")


def test_sweep_cohort_seed_and_a_missing_seed(tmp_path):
    cfg, st = _perturbed_cohort(tmp_path, seed=7, backbone="ffmlp")
    folder = tmp_path / "run" / "cohorts" / "faces_ffmlp"
    save_stack(st, folder, {"regime": "cohort", "grid": [6, 5]})
    (tmp_path / "run" / "run.json").write_text(json.dumps({"cmd": "sweep", "spec": {"cohort_seed": 7}}))
    a = adv.advise(adv.load_model(folder))
    assert a.grid == (6, 5)  # the recorded grid
    assert a.profile == profile(st, (6, 5), init_seed=7)
    # without any record: the estimate over init draws (seeds 0..n-1)
    bare = tmp_path / "bare"
    save_stack(st, bare, {"regime": "cohort"})
    b = adv.advise(adv.load_model(bare), (6, 5), init_seeds=3)
    want = np.mean([weight_ranks(Stack.init(cfg, 3, [s])) for s in range(3)], axis=0)
    assert b.init == {"kind": "estimate", "seeds": [0, 1, 2]}
    assert b.profile.sr_w_init == pytest.approx(want.tolist(), rel=1e-12)
    # a seed given by hand, and one the checkpoint's meta records, are used as they are
    c = adv.advise(adv.load_model(bare), (6, 5), init_seed=7)
    assert c.profile == profile(st, (6, 5), init_seed=7) and c.init["from"] == "--init-seed"
    save_stack(st, tmp_path / "meta", {"regime": "cohort", "seed": 7})
    m = adv.load_model(tmp_path / "meta")
    assert (m.init_seed, m.init_seed_from) == (7, "the checkpoint's meta")


def test_single_fit_checkpoint_member_and_its_seed(tmp_path):
    cfg = NetConfig(width=8, depth=2)
    st = Stack.init(cfg, 1, [3, 5])
    save_stack(st, tmp_path / "m", {"regime": "single", "members": ["img@3", "img@5"]})
    model = adv.load_model(tmp_path / "m", member=1)
    assert model.init_seed == 5
    assert torch.equal(model.stack.weights[1][0], st.weights[1][1])
    assert adv.advise(model, (4, 4)).profile.delta_sr == pytest.approx([0.0, 0.0], abs=1e-12)  # untrained: W = W⁰
    with pytest.raises(ValueError, match="--member 2"):
        adv.load_model(tmp_path / "m", member=2)


# ------------------------------------------------------------------------------------------- foreign models
@pytest.mark.filterwarnings("ignore:`torch.jit")
@pytest.mark.parametrize("kind", ["state_dict", "torchscript"])
def test_torch_siren_state_dict_and_torchscript_equal_the_module(tmp_path, kind):
    net = tiny_siren(w0_first=20.0, w0=30.0)
    path = tmp_path / ("m.pt" if kind == "state_dict" else "m.ts")
    if kind == "state_dict":
        torch.save(net.state_dict(), path)
    else:
        torch.jit.script(net).save(str(path))
    model = adv.load_model(path, "sine", omega0=30.0, omega0_first=20.0)
    assert model.format == kind
    lins = linears_of(net)
    for ell, lin in enumerate(lins):  # (out, in) → (in, out)
        assert torch.equal(model.stack.weights[ell][0], lin.weight.detach().T)
        assert torch.equal(model.stack.biases[ell][0, 0], lin.bias.detach())
    coords = grid(5, 7)
    with torch.no_grad():
        assert torch.allclose(model.stack(coords)[0], net(coords), atol=1e-5)
    a = adv.advise(model, (6, 6))
    assert a.profile.sr_w == pytest.approx([np_sr(lin.weight.detach().numpy()) for lin in lins[:-1]], rel=1e-9)
    # sr(H) against numpy on the module's own post-activations
    with torch.no_grad():
        h, hs = grid(6, 6), []
        for m in net:
            h = m(h)
            if isinstance(m, Sine):
                hs.append(h.numpy())
    assert a.profile.sr_h == pytest.approx([np_sr(x) for x in hs], rel=1e-6)
    assert a.profile.sr_h_centred == pytest.approx([np_sr(x - x.mean(0, keepdims=True)) for x in hs], rel=1e-6)
    assert [r["key"] for r in adv.profile_rows(a)] == ["0", "2", "4"]


def test_delta_sr_estimate_of_a_foreign_model_is_the_mean_over_init_draws(tmp_path):
    net = tiny_siren(width=8, hidden=3, out=1)
    torch.save(net.state_dict(), tmp_path / "m.pth")
    a = adv.advise(adv.load_model(tmp_path / "m.pth", "sine"), (4, 4), init_seeds=4)
    cfg = NetConfig(backbone="siren", width=8, depth=3)
    # each draw: SIREN's own init for these shapes, member drawn alone from its seed; sr by numpy
    per = [[np_sr(Stack.init(cfg, 1, [s]).weights[ell][0].detach().numpy()) for ell in range(3)] for s in range(4)]
    want = np.mean(per, axis=0)
    assert a.init == {"kind": "estimate", "seeds": [0, 1, 2, 3]}
    assert a.profile.sr_w_init == pytest.approx(want.tolist(), rel=1e-9)
    sr_w = [np_sr(lin.weight.detach().numpy()) for lin in linears_of(net)[:-1]]
    assert a.profile.delta_sr == pytest.approx((np.asarray(sr_w) - want).tolist(), rel=1e-9, abs=1e-12)
    assert a.profile.k_delta == int(np.argmax(np.asarray(sr_w) - want))
    assert "mean over 4 draws" in adv.init_sentence(a)


class SineLayer(nn.Module):
    def __init__(self, i: int, o: int, w0: float = 30.0):
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(i, o)

    def forward(self, x):
        return torch.sin(self.w0 * self.linear(x))


class INR(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class SharedINR(nn.Module):
    """STRAINER's layout: encoderINR.net.<i>.linear, decoderINRs.<j>.net.<…>."""

    def __init__(self, width=8, shared=3, heads=2, head_hidden=0, out=3):
        super().__init__()
        torch.manual_seed(1)
        self.encoderINR = INR([SineLayer(2 if i == 0 else width, width) for i in range(shared)])
        self.decoderINRs = nn.ModuleList([INR([*[SineLayer(width, width) for _ in range(head_hidden)], nn.Linear(width, out)])
                                          for _ in range(heads)])

    def forward(self, x):
        f = self.encoderINR(x)
        return [d(f) for d in self.decoderINRs]


@pytest.mark.parametrize("head_hidden", [0, 1])
def test_strainer_layout_encoder_and_two_heads(tmp_path, head_hidden):
    net = SharedINR(head_hidden=head_hidden)
    torch.save(net.state_dict(), tmp_path / "strainer.pth")
    coords = grid(4, 5).double()  # float64: nn.Linear's init with ω₀ = 30 gives large sine arguments
    with torch.no_grad():
        outs = net.double()(coords)
    model = adv.load_model(tmp_path / "strainer.pth", "sine")
    assert model.heads == ["decoderINRs.0", "decoderINRs.1"] and model.head == "decoderINRs.0"
    keys = [lay.key for lay in model.layers]
    assert keys[:3] == ["encoderINR.net.0.linear", "encoderINR.net.1.linear", "encoderINR.net.2.linear"]
    assert keys[-1] == f"decoderINRs.0.net.{head_hidden}"
    assert [lay.role for lay in model.layers] == ["encoder"] * 3 + ["head-hidden"] * head_hidden + ["head"]
    assert model.stack.cfg.depth == 3 + head_hidden
    with torch.no_grad():
        assert torch.allclose(model.stack.double()(coords)[0], outs[0], atol=1e-9)
    second = adv.load_model(tmp_path / "strainer.pth", "sine", head_prefix="decoderINRs.1")
    assert second.head == "decoderINRs.1" and [lay.key for lay in second.layers][:3] == keys[:3]
    with torch.no_grad():
        assert torch.allclose(second.stack.double()(coords)[0], outs[1], atol=1e-9)


def test_alpine_style_and_generic_head_layouts():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    sd = {"encoder.0.weight": r(8, 2), "encoder.0.bias": r(8), "encoder.2.weight": r(8, 8), "encoder.2.bias": r(8),
          "decoder.0.0.weight": r(3, 8), "decoder.0.0.bias": r(3), "decoder.1.0.weight": r(3, 8), "decoder.1.0.bias": r(3)}
    chain, heads, head, n_shared = adv.arrange(adv.find_linears(sd))
    assert [c.key for c in chain] == ["encoder.0", "encoder.2", "decoder.0.0"] and heads == ["decoder.0", "decoder.1"]
    assert n_shared == 2 and head == "decoder.0"
    # a named (non-indexed) head moves to the end; a sequential FFMLP whose layers all have one shape is not "heads"
    sd2 = {"head.weight": r(1, 8), "body.0.weight": r(8, 8), "body.1.weight": r(8, 8), "body.2.weight": r(8, 8)}
    assert adv.arrange(adv.find_linears(sd2))[2] is None
    chain, heads, head, _ = adv.arrange(adv.find_linears(sd2), head_prefix="head")
    assert [c.key for c in chain] == ["body.0", "body.1", "body.2", "head"] and head == "head"


class FourierReLU(nn.Module):
    def __init__(self, m=4, width=8, out=1, sigma=2.0):
        super().__init__()
        torch.manual_seed(2)
        self.register_buffer("B", torch.randn(m, 2) * sigma)  # x @ Bᵀ, as Tancik et al.
        self.mlp = nn.Sequential(nn.Linear(2 * m, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out))

    def forward(self, x):
        p = 2 * math.pi * x @ self.B.T
        return self.mlp(torch.cat([torch.sin(p), torch.cos(p)], -1))


def test_relu_with_a_fourier_matrix_is_an_ffmlp(tmp_path):
    net = FourierReLU()
    torch.save(net.state_dict(), tmp_path / "ff.pt")
    model = adv.load_model(tmp_path / "ff.pt", "relu", fourier="B")
    cfg = model.stack.cfg
    assert cfg.backbone == "ffmlp" and cfg.ff_features == 4 and cfg.depth == 2
    assert cfg.ff_sigma == pytest.approx(float(net.B.pow(2).mean().sqrt()))
    assert torch.equal(model.stack.encoding["fourier"][0], net.B.T)
    coords = grid(5, 4)
    with torch.no_grad():
        assert torch.allclose(model.stack(coords)[0], net(coords), atol=1e-5)
    a = adv.advise(model, (5, 5), init_seeds=2)
    assert a.profile.sr_w == pytest.approx([np_sr(lin.weight.detach().numpy()) for lin in linears_of(net)[:-1]], rel=1e-9)
    # a (2, m) matrix is taken as it is
    torch.save({**net.state_dict(), "B": net.B.T.contiguous()}, tmp_path / "ff2.pt")
    m2 = adv.load_model(tmp_path / "ff2.pt", "relu", fourier="B")
    assert torch.equal(m2.stack.encoding["fourier"][0], net.B.T)
    with pytest.raises(ValueError, match="--fourier"):
        adv.load_model(tmp_path / "ff.pt", "relu")


# ------------------------------------------------------------------------------------------- errors
def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("inrlens: error: "), err
    return err[0]


def test_bad_files_are_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "out"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file at all")
    torch.save({"norm.weight": torch.ones(3), "scale": torch.zeros(2)}, tmp_path / "nolin.pt")
    torch.save({"0.weight": torch.zeros(8, 2), "1.weight": torch.zeros(8, 5), "2.weight": torch.zeros(1, 8)}, tmp_path / "bad.pt")
    torch.save(tiny_siren(), tmp_path / "pickled.pt")  # a whole pickled module, not a state_dict
    torch.save(tiny_siren().state_dict(), tmp_path / "ok.pt")
    cases = [
        ([str(tmp_path / "missing.pt"), "--activation", "sine"], "no such file"),
        ([str(garbage), "--activation", "sine"], "not a readable PyTorch state_dict"),
        ([str(tmp_path / "nolin.pt"), "--activation", "sine"], "no Linear layers found"),
        ([str(tmp_path / "bad.pt"), "--activation", "sine"], "inconsistent shapes: layer 1 (1) takes 5 inputs but layer 0 (0) gives 8"),
        ([str(tmp_path / "pickled.pt"), "--activation", "sine"], "state_dict"),
        ([str(tmp_path / "ok.pt"), "--activation", "tanh"], "unknown activation 'tanh'"),
        ([str(tmp_path / "ok.pt")], "--activation is required"),
        ([str(tmp_path / "ok.pt"), "--activation", "relu"], "--fourier"),
        ([str(tmp_path), "--activation", "sine"], "folder without cfg.json"),
    ]
    for argv, needle in cases:
        capsys.readouterr()
        assert main(["advise", *argv, "--out", str(out)]) == 2, argv
        line = _one_line(capsys)
        assert needle in line, (needle, line)
        assert not out.exists()


# ------------------------------------------------------------------------------------------- --verify
def test_verify_on_a_tiny_trained_cohort(tmp_path, capsys):
    from inrlens.config import DataConfig, TrainConfig
    from inrlens.data import resolve
    from inrlens.fit import fit_cohort
    from inrlens.stats import best_set

    sigs = resolve("noise:uniform:n=3:size=16", DataConfig())
    cfg = NetConfig(width=8, depth=3)
    st, _, _ = fit_cohort(sigs, cfg, TrainConfig(steps=30, lr=1e-3, device="cpu"), seed=0, progress=False)
    save_stack(st, tmp_path / "cohort", {"regime": "cohort", "members": [s.name for s in sigs]})
    out = tmp_path / "advice"
    argv = ["advise", str(tmp_path / "cohort"), "--grid", "16", "16", "--verify", "noise:pink:n=2:size=16:seed=5",
            "--steps", "30", "--seeds", "0", "1", "--device", "cpu", "--lr", "1e-3", "--random-lr", "1e-3", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    j = json.loads((out / "advise.json").read_text())
    v = j["verify"]
    labels = ["none", "0", "1", "2", "random"]
    assert [d["depth"] for d in v["depths"]] == labels
    assert set(v) >= {"images", "seeds", "steps", "lr", "random_lr", "depths", "best", "best_set", "diffs", "recommended",
                      "in_best_set", "verdict", "gain_vs_none", "predictors", "rows"}
    assert v["steps"] == 30 and v["seeds"] == [0, 1] and len(v["images"]) == 2 and v["lr"] == 1e-3
    assert len(v["rows"]) == len(labels) * 2 * 2
    k = j["recommendation"]["k"]
    assert v["recommended"] == k == j["profile"]["k_w"]
    # independent references from the rows: mean ± sample std, the paired gain, the best set
    vals = {lab: {(r["unit"], r["seed"]): r["psnr"] for r in v["rows"] if r["depth"] == lab and r["psnr"] is not None} for lab in labels}
    for d in v["depths"]:
        x = np.asarray(list(vals[d["depth"]].values()))
        assert d["psnr_mean"] == pytest.approx(x.mean()) and d["psnr_std"] == pytest.approx(x.std(ddof=1))
    diffs = np.asarray([vals[str(k)][u] - vals["none"][u] for u in vals[str(k)]])
    assert v["gain_vs_none"]["mean"] == pytest.approx(diffs.mean()) and v["gain_vs_none"]["n"] == len(diffs)
    half = 3.182446305284263 * diffs.std(ddof=1) / 2.0  # t_{0.975, 3}, n = 4 units
    assert v["gain_vs_none"]["lo"] == pytest.approx(diffs.mean() - half, rel=1e-6)
    bs = best_set(vals)
    assert v["best"] == bs["best"] and v["best_set"] == bs["set"]
    assert v["in_best_set"] == (str(k) in bs["set"])
    if str(k) not in bs["set"]:
        assert v["verdict"] == "disagrees"
    elif set(bs["set"]) == set(labels):
        assert v["verdict"] == "inconclusive (n = 4)"
    else:
        assert v["verdict"] == "agrees"
    assert f"verdict on k* = {k}: {v['verdict']} (k* = {k} is {'inside' if v['in_best_set'] else 'outside'} the best-k set)" in text
    assert "gain of k*" in text and "## Verification" in (out / "advise.md").read_text()


def test_safetensors_wrapped_state_dict_and_a_registered_backbone_with_options(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(3)
    lins = [nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 1)]
    sd = {f"layers.{i}.{n}": getattr(lin, n).detach().clone() for i, lin in enumerate(lins) for n in ("weight", "bias")}
    save_file(sd, str(tmp_path / "g.safetensors"))
    torch.save({"epoch": 12, "state_dict": sd}, tmp_path / "wrapped.ckpt")

    def gauss_net(x, s):  # the Gaussian-activation MLP the weights belong to
        for lin in lins[:-1]:
            x = torch.exp(-((s * lin(x)) ** 2))
        return lins[-1](x)

    coords = grid(4, 6)
    for path, fmt in ((tmp_path / "g.safetensors", "safetensors"), (tmp_path / "wrapped.ckpt", "state_dict")):
        model = adv.load_model(path, "gauss", options=["gauss_scale=2.5"])
        assert model.format == fmt and model.stack.cfg.gauss_scale == 2.5 and model.stack.cfg.backbone == "gauss"
        with torch.no_grad():
            assert torch.allclose(model.stack(coords)[0], gauss_net(coords, 2.5), atol=1e-6)
    with pytest.raises(ValueError, match="gauss_scale"):
        adv.load_model(tmp_path / "g.safetensors", "gauss", options=["gauss_scale=abc"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        adv.load_model(tmp_path / "g.safetensors", "gauss", options=["gauss_scale"])


def test_wire_weights_must_be_in_its_real_layout(tmp_path):
    cfg = NetConfig(backbone="wire", width=8, depth=2)
    st = Stack.init(cfg, 1, [0])
    sd = {}
    for i in range(3):
        sd[f"l{i}.weight"] = st.weights[i][0].detach().T.contiguous()
        sd[f"l{i}.bias"] = st.biases[i][0, 0].detach().clone()
    torch.save(sd, tmp_path / "wire.pt")
    model = adv.load_model(tmp_path / "wire.pt", "wire")
    coords = grid(3, 5)
    with torch.no_grad():
        assert torch.allclose(model.stack(coords), st(coords), atol=1e-6)
    sd["l1.weight"] = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"layer 1 \(l1\) is not in wire's real layout"):
        adv.load_model(tmp_path / "bad.pt", "wire")
