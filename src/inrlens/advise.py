"""Where to freeze any trained coordinate MLP: read its linear layers, profile their stable ranks, recommend k*.

A model is read from one of (docs/advise.md describes each precisely):

* an inrlens checkpoint folder (``cfg.json`` + ``model.safetensors``): a cohort encoder or a single INR;
* a PyTorch state_dict file (``.pt`` / ``.pth`` / ``.bin``, read with ``torch.load(weights_only=True)``) or a
  ``.safetensors`` file of a stack of Linear layers, STRAINER-style encoder + heads layouts included;
* a TorchScript file (``torch.jit.load``; its state_dict is read, its code is never run).

The layers become a one-encoder :class:`~inrlens.nets.Stack` of a registered backbone (the hidden layers
0..L−1 and one linear head), and :func:`inrlens.probes.rank.profile` gives sr(W_ℓ), sr(H_ℓ) (uncentred and
centred), sr(W_ℓ⁰) at initialisation and Δsr_ℓ. The recommendation is the paper's predictor k* = argmax sr(W);
argmax sr(H) and argmax Δsr are reported beside it. A foreign model has no init seed: its sr(W_ℓ⁰) is the mean
over a few draws of the backbone's own init for the same layer shapes.

:func:`verify` checks the recommendation on images: a short freeze sweep from the encoder (no-freeze, every k,
random init), the best-k set with 95% intervals, and whether k* is in it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .config import NetConfig, from_dict, to_dict
from .nets import Stack
from .probes.rank import recorded_init_seed

ACTIVATIONS = {"sine": "siren", "relu": "ffmlp"}
"""Activation words → the registered backbone they mean (any registered backbone name is accepted as well)."""
DEFAULT_OMEGA0 = 30.0
"""SIREN ω₀ assumed for a foreign sine model when --omega0 / --omega0-first are not given [SIREN]."""
DEFAULT_GRID = (64, 64)
"""Grid of the activation ranks when neither --grid nor the checkpoint gives one."""
DEFAULT_INIT_SEEDS = 5
"""Draws of the backbone's init averaged for sr(W⁰) of a model without a recorded seed."""
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "params")
"""Keys under which a training checkpoint commonly nests its state_dict (used when the top level holds no tensors)."""
Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------ layers
@dataclass
class Linear:
    """One discovered linear layer: ``key`` (the module path, without ``.weight``), weight (out, in), bias (out,)."""

    key: str
    weight: Tensor
    bias: Tensor | None

    @property
    def shape(self) -> tuple[int, int]:
        """(in, out)."""
        return int(self.weight.shape[1]), int(self.weight.shape[0])

    @property
    def parts(self) -> list[str]:
        return self.key.split(".") if self.key else []


@dataclass
class Layer:
    """One layer of the stack as advise reports it."""

    index: int
    """ℓ in the stack: 0..L−1 hidden, L the head."""
    key: str
    """Where it came from (a state_dict module path, or ``weight<ℓ>`` in an inrlens checkpoint)."""
    fan_in: int
    fan_out: int
    role: str
    """'encoder' (shared by every head), 'head-hidden' (a hidden layer of the chosen head) or 'head'."""


@dataclass
class Model:
    """A trained coordinate MLP as an inrlens stack, and how it was read."""

    stack: Stack
    """Hidden layers with one member (B_ℓ = 1); an inrlens cohort keeps all its heads."""
    path: str
    format: str
    """'inrlens', 'state_dict', 'safetensors' or 'torchscript'."""
    layers: list[Layer]
    heads: list[str] = field(default_factory=list)
    """Head prefixes found (STRAINER layouts); empty for a plain stack of layers."""
    head: str | None = None
    """The head whose layers end the stack (the first one unless --head-prefix names another)."""
    meta: dict[str, Any] = field(default_factory=dict)
    init_seed: int | None = None
    """The seed the encoder was drawn from, when the checkpoint (or its run folder) records it."""
    init_seed_from: str = ""
    """Where ``init_seed`` was read."""
    grid: tuple[int, int] | None = None
    """The grid the checkpoint records (sweep cohorts), if any."""
    notes: list[str] = field(default_factory=list)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip with a code/ folder and constants.pkl; a torch.save file has neither."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, Tensor], str]:
    """(name → tensor in file order, format) of a state_dict, safetensors or TorchScript file; one-line errors."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        raise ValueError(f"{path}: a folder without cfg.json + model.safetensors; give an inrlens checkpoint folder or a model file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path))), "safetensors"
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for damaged files
            raise ValueError(f"{path}: not a readable safetensors file ({_one_line(e)})") from None
    if _is_torchscript(path):
        import warnings

        try:
            with warnings.catch_warnings():  # torch's deprecation notice of TorchScript is not the user's concern here
                warnings.simplefilter("ignore")
                module = torch.jit.load(str(path), map_location="cpu")
            return dict(module.state_dict()), "torchscript"
        except Exception as e:  # noqa: BLE001 - torch.jit raises RuntimeError and friends
            raise ValueError(f"{path}: not a readable TorchScript file ({_one_line(e)})") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        why = _one_line(e)
        if "weights_only" in why or "Unsupported global" in why:
            why = "it pickles Python objects, not only tensors; save model.state_dict() or a TorchScript file"
        raise ValueError(f"{path}: not a readable PyTorch state_dict ({why})") from None
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors)")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        nested = [k for k in STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)]
        if nested:
            tensors = {str(k): v for k, v in obj[nested[0]].items() if isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{path}: holds no tensors (expected a state_dict of Linear layers)")
    return tensors, "state_dict"


def find_linears(tensors: Mapping[str, Tensor], exclude: Sequence[str] = ()) -> list[Linear]:
    """Linear layers in file order: every ``<key>.weight`` holding a 2-D float tensor (PyTorch's (out, in)), with
    ``<key>.bias`` (1-D, out entries) when present. Keys in ``exclude`` and tensors sharing their storage (a
    module registered under two names) are left out; a weight seen under a second name is counted once."""
    skip = {k for k in exclude}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for k in exclude:
        t = tensors.get(k)
        if t is not None:
            seen.add((t.data_ptr(), tuple(t.shape)))
    out = []
    for name, t in tensors.items():
        if name in skip or not (name == "weight" or name.endswith(".weight")):
            continue
        if t.ndim != 2 or not t.is_floating_point():
            continue
        ident = (t.data_ptr(), tuple(t.shape))
        if ident in seen and t.numel():
            continue
        seen.add(ident)
        key = name[: -len("weight")].rstrip(".")
        bname = f"{key}.bias" if key else "bias"
        b = tensors.get(bname)
        if b is not None and (b.ndim != 1 or b.shape[0] != t.shape[0]):
            raise ValueError(f"{bname}: bias of shape {tuple(b.shape)} does not match weight {name} of shape {tuple(t.shape)} "
                             "(a Linear layer's bias has one entry per output)")
        out.append(Linear(key, t.detach().float(), None if b is None else b.detach().float()))
    return out


def _under(lin: Linear, prefix: list[str]) -> bool:
    return lin.parts[: len(prefix)] == prefix and len(lin.parts) > len(prefix)


def detect_heads(lins: Sequence[Linear]) -> tuple[list[str], dict[str, list[Linear]]]:
    """Parallel heads of a STRAINER-style layout: (prefix of the head list split in parts, {head prefix: layers}).

    A head list is a module path ``P`` followed by an integer index under which at least two groups of layers
    sit that are identical in layout (the same relative names and shapes) and that do not chain into each other
    (a group's last output size differs from the first's input size), e.g. ``decoderINRs.0.net.0`` and
    ``decoderINRs.1.net.0``. Sequential hidden layers (``net.1``, ``net.2``, …) chain and are not heads. The
    shortest such ``P`` wins; none gives ([], {})."""
    cands: dict[tuple[str, ...], dict[str, list[Linear]]] = {}
    for lin in lins:
        parts = lin.parts
        for p, comp in enumerate(parts):
            if comp.isdigit():
                cands.setdefault(tuple(parts[:p]), {}).setdefault(comp, []).append(lin)
    found: list[tuple[str, ...]] = []
    for prefix, groups in sorted(cands.items(), key=lambda kv: len(kv[0])):
        if len(groups) < 2:
            continue
        n = len(prefix) + 1
        sigs = {tuple((".".join(lin.parts[n:]), lin.shape) for lin in g) for g in groups.values()}
        if len(sigs) != 1:
            continue
        g0 = next(iter(groups.values()))
        if g0[-1].shape[1] == g0[0].shape[0]:  # groups chain into each other: sequential layers, not parallel heads
            continue
        if found and len(found[0]) < len(prefix):
            break
        found.append(prefix)
    if not found:
        return [], {}
    if len(found) > 1:
        names = ", ".join(".".join(f) or "(top level)" for f in found)
        raise ValueError(f"several lists of heads ({names}); name the head to use with --head-prefix")
    prefix = list(found[0])
    heads = {".".join(prefix + [i]): g for i, g in cands[found[0]].items()}
    return prefix, heads


def arrange(lins: Sequence[Linear], head_prefix: str | None = None) -> tuple[list[Linear], list[str], str | None, int]:
    """(chain of layers in order, head prefixes found, chosen head prefix, how many chain layers are shared).

    Without heads the chain is every layer in file order. With heads (detected, or named by ``head_prefix``)
    it is the layers outside the heads (the shared encoder, in file order) followed by the chosen head's layers;
    the other heads are left out. ``head_prefix`` ending in an index (``decoderINRs.1``) leaves out its sibling
    heads (``decoderINRs.<other>``); any other prefix only moves its layers to the end of the chain."""
    if not lins:
        raise ValueError("no Linear layers found (no 2-D '<name>.weight' tensors)")
    if head_prefix is not None:
        want = [p for p in head_prefix.strip().strip(".").split(".") if p]
        if not want:
            raise ValueError("--head-prefix is empty; name the head's keys, e.g. decoderINRs.0")
        head = [lin for lin in lins if lin.parts[: len(want)] == want]
        if not head:
            keys = ", ".join(lin.key for lin in lins[:6])
            raise ValueError(f"--head-prefix {head_prefix!r}: no Linear layer under it (layers: {keys}{', …' if len(lins) > 6 else ''})")
        heads = [".".join(want)]
        if want[-1].isdigit():
            sib = want[:-1]
            others = [lin.parts[len(sib)] for lin in lins if _under(lin, sib) and lin.parts[: len(want)] != want]
            heads += [".".join(sib + [o]) for o in dict.fromkeys(others) if o.isdigit()]
            rest = [lin for lin in lins if not (_under(lin, sib) and lin.parts[len(sib)].isdigit())]
        else:
            rest = [lin for lin in lins if lin.parts[: len(want)] != want]
        return rest + head, heads, heads[0], len(rest)
    prefix, groups = detect_heads(lins)
    if not groups:
        return list(lins), [], None, 0
    first = next(iter(groups))
    rest = [lin for lin in lins if not (_under(lin, prefix) and lin.parts[len(prefix)].isdigit())]
    return rest + groups[first], list(groups), first, len(rest)


def check_chain(chain: Sequence[Linear]) -> None:
    """Layer ℓ's input size must be layer ℓ−1's output size; at least one hidden layer and a head."""
    if len(chain) < 2:
        raise ValueError(f"found {len(chain)} Linear layer(s); a coordinate MLP needs at least one hidden layer and a head")
    for ell in range(1, len(chain)):
        a, b = chain[ell - 1], chain[ell]
        if b.shape[0] != a.shape[1]:
            raise ValueError(f"inconsistent shapes: layer {ell} ({b.key or 'weight'}) takes {b.shape[0]} inputs but layer "
                             f"{ell - 1} ({a.key or 'weight'}) gives {a.shape[1]}")


# ------------------------------------------------------------------------------------------------ building
def backbone_for(activation: str) -> str:
    """'sine' → siren, 'relu' → ffmlp, a registered backbone name → itself; one-line error otherwise."""
    from .backbones import backbone_names

    name = str(activation).strip().lower()
    name = ACTIVATIONS.get(name, name)
    if name not in backbone_names():
        raise ValueError(f"unknown activation {activation!r}; use sine, relu or a registered backbone "
                         f"({', '.join(backbone_names())})")
    return name


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """['gauss_scale=10', …] → {'gauss_scale': 10}; values are read as JSON (numbers, true/false, null), else text."""
    out: dict[str, Any] = {}
    for it in items:
        k, sep, v = str(it).partition("=")
        k = k.strip()
        if not sep or not k:
            raise ValueError(f"--net-option expects FIELD=VALUE, got {it!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _fourier_matrix(tensors: Mapping[str, Tensor], key: str, d0: int) -> Tensor:
    """The (2, m) frequency matrix from tensor ``key``: an (m, 2) tensor (x @ Bᵀ, Tancik et al.'s and an
    nn.Linear's layout) is transposed; a (2, m) one with m ≠ 2 is used as is."""
    if key not in tensors:
        names = ", ".join(list(tensors)[:8])
        raise ValueError(f"--fourier {key!r}: no such tensor (tensors: {names}{', …' if len(tensors) > 8 else ''})")
    b = tensors[key].detach().float()
    if b.ndim != 2 or 2 not in b.shape:
        raise ValueError(f"--fourier {key!r}: expected a (m, 2) or (2, m) frequency matrix for 2-D coordinates, got shape {tuple(b.shape)}")
    b = b.T.contiguous() if b.shape[1] == 2 else b
    if 2 * b.shape[1] != d0:
        raise ValueError(f"--fourier {key!r}: {b.shape[1]} frequencies give 2·{b.shape[1]} = {2 * b.shape[1]} features, "
                         f"but the first Linear layer takes {d0} inputs")
    return b


def build_stack(chain: Sequence[Linear], backbone: str, *, omega0: float | None = None, omega0_first: float | None = None,
                fourier: Tensor | None = None, options: Mapping[str, Any] | None = None) -> Stack:
    """A B = 1 stack of ``backbone``: chain[:-1] the hidden layers, chain[-1] the head. PyTorch's (out, in) weights
    are transposed into the stack's (in, out); a missing bias is zero. One width for every hidden layer."""
    from .backbones import get_backbone

    check_chain(chain)
    widths = [lin.shape[1] for lin in chain[:-1]]
    if len(set(widths)) != 1:
        raise ValueError(f"hidden layers have widths {widths}; inrlens stacks need one width for every hidden layer")
    bb = get_backbone(backbone)
    enc_names = bb.encoding_names(NetConfig(backbone=backbone, width=widths[0], depth=len(widths)))
    if fourier is not None and enc_names != ("fourier",):
        raise ValueError(f"--fourier: backbone {backbone!r} has no Fourier matrix; use --activation relu (ffmlp)")
    if enc_names and fourier is None:
        if enc_names == ("fourier",):
            raise ValueError(f"backbone {backbone!r} needs its Fourier-feature matrix: name the tensor with --fourier KEY")
        raise ValueError(f"backbone {backbone!r} needs encoding tensors ({', '.join(enc_names)}); advise reads foreign "
                         "encodings only as a Fourier matrix (--fourier)")
    d = dict(options or {})
    d.update(backbone=backbone, width=widths[0], depth=len(widths))
    if omega0 is not None or "omega0" not in d:
        d["omega0"] = float(omega0 if omega0 is not None else DEFAULT_OMEGA0)
    if omega0_first is not None or "omega0_first" not in d:
        d["omega0_first"] = float(omega0_first if omega0_first is not None else DEFAULT_OMEGA0)
    encoding: dict[str, Tensor] = {}
    if fourier is not None:
        d["ff_features"] = int(fourier.shape[1])
        rms = float(fourier.pow(2).mean().sqrt())
        d.setdefault("ff_sigma", rms if rms > 0 else 1.0)  # only used to draw fresh matrices (the random-init baseline)
        encoding["fourier"] = fourier.unsqueeze(0)
    cfg = from_dict(NetConfig, d, "--net-option")
    d0 = int(bb.encoding_dim(cfg))
    if chain[0].shape[0] != d0:
        raise ValueError(f"layer 0 ({chain[0].key or 'weight'}) takes {chain[0].shape[0]} inputs; a {backbone} on 2-D "
                         f"coordinates takes {d0}" + (" (a model of 3-D coordinates is not supported)" if d0 == 2 else ""))
    ws = [lin.weight.T.contiguous().unsqueeze(0) for lin in chain]
    bs = [(lin.bias if lin.bias is not None else torch.zeros(lin.shape[1])).reshape(1, 1, -1).contiguous() for lin in chain]
    if backbone == "wire":
        _check_wire_layout(chain, ws, bs)
    stack = Stack(cfg, chain[-1].shape[1], encoding, ws, bs)
    for p in stack.parameters():
        p.requires_grad_(False)
    return stack


def _check_wire_layout(chain: Sequence[Linear], ws: Sequence[Tensor], bs: Sequence[Tensor]) -> None:
    """WIRE's complex layers carried in real numbers (docs/backbones.md): layer 0 stored as [A₀, 0] with bias
    [a₀, 0], hidden layers as [[A, B], [−B, A]]. Weights in another layout would be silently reinterpreted."""
    from .backbones.wire import complex_blocks, realify

    c = ws[0].shape[-1] // 2
    if ws[0].shape[-1] % 2 or ws[0][..., c:].abs().max() > 0 or bs[0][..., c:].abs().max() > 0:
        raise ValueError(f"layer 0 ({chain[0].key or 'weight'}) is not in wire's real layout (weight [A₀, 0], bias [a₀, 0]); "
                         "advise reads WIRE models only as inrlens stores them (docs/backbones.md)")
    for ell in range(1, len(ws) - 1):
        w = ws[ell]
        if not torch.allclose(realify(*complex_blocks(w)), w, rtol=1e-5, atol=1e-7):
            raise ValueError(f"layer {ell} ({chain[ell].key or 'weight'}) is not in wire's real layout ([[A, B], [−B, A]]); "
                             "advise reads WIRE models only as inrlens stores them (docs/backbones.md)")


# ------------------------------------------------------------------------------------------------ loading
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def load_inrlens(folder: Path, member: int = 0) -> Model:
    """An inrlens checkpoint folder: a cohort stays as saved (shared encoder + all heads); a stack of independent
    members (a single-fit checkpoint) gives member ``member``."""
    from .store import load_stack

    stack, meta = load_stack(folder)
    notes = []
    shared = all(w.shape[0] == 1 for w in stack.weights[:-1]) and all(t.shape[0] == 1 for t in stack.encoding.values())
    if not shared:
        if not 0 <= member < stack.members:
            raise ValueError(f"--member {member}: {folder} holds {stack.members} members (0..{stack.members - 1})")
        stack = stack.member(member)
        notes.append(f"member {member} of {len(meta.get('members') or []) or 'several'}")
    elif member != 0 and stack.weights[-1].shape[0] > 1:
        notes.append("--member is ignored for a cohort: its encoder is shared by every head")
    L = stack.cfg.depth
    dims = [(int(w.shape[1]), int(w.shape[2])) for w in stack.weights]
    layers = [Layer(ell, f"weight{ell}", *dims[ell], "head" if ell == L else "encoder") for ell in range(L + 1)]
    n_heads = int(stack.weights[-1].shape[0])
    heads = [f"head {i}" for i in range(n_heads)] if n_heads > 1 else []
    seed, where = recorded_init_seed(folder, meta, member)
    g = meta.get("grid")
    grid_shape = (int(g[0]), int(g[1])) if isinstance(g, (list, tuple)) and len(g) == 2 else None
    for p in stack.parameters():
        p.requires_grad_(False)
    return Model(stack, str(folder), "inrlens", layers, heads, heads[0] if heads else None, dict(meta), seed, where, grid_shape, notes)


def load_model(path: str | os.PathLike, activation: str | None = None, *, omega0: float | None = None,
               omega0_first: float | None = None, fourier: str | None = None, head_prefix: str | None = None,
               member: int = 0, options: Sequence[str] | Mapping[str, Any] = ()) -> Model:
    """Read a trained coordinate MLP (see the module docstring) into a :class:`Model`.

    For an inrlens folder everything is read from the checkpoint (a given ``activation`` must name its backbone;
    the other flags are refused). Otherwise ``activation`` is required: 'sine' (SIREN with ω₀ = ``omega0``, first
    layer ``omega0_first``, both 30 by default), 'relu' (FFMLP: needs ``fourier``, the key of its frequency
    matrix) or a registered backbone; ``options`` set further NetConfig fields of that backbone."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    opts = dict(options) if isinstance(options, Mapping) else parse_options(options)
    if member < 0:
        raise ValueError(f"--member must be >= 0, got {member}")
    if path.is_dir() and (path / "cfg.json").exists():
        given = {"--omega0": omega0, "--omega0-first": omega0_first, "--fourier": fourier, "--head-prefix": head_prefix}
        bad = [k for k, v in given.items() if v is not None] + (["--net-option"] if opts else [])
        if bad:
            raise ValueError(f"{path}: an inrlens checkpoint records its architecture; drop {', '.join(bad)}")
        model = load_inrlens(path, member)
        if activation is not None and backbone_for(activation) != model.stack.cfg.backbone:
            raise ValueError(f"{path}: is a {model.stack.cfg.backbone} checkpoint, not {activation!r}; drop --activation")
        return model
    tensors, fmt = read_tensors(path)
    if activation is None:
        raise ValueError(f"{path}: --activation is required for a {fmt} file (sine, relu or a registered backbone)")
    backbone = backbone_for(activation)
    lins = find_linears(tensors, exclude=[fourier] if fourier else ())
    chain, heads, head, n_shared = arrange(lins, head_prefix)
    check_chain(chain)
    B = _fourier_matrix(tensors, fourier, chain[0].shape[0]) if fourier is not None else None
    stack = build_stack(chain, backbone, omega0=omega0, omega0_first=omega0_first, fourier=B, options=opts)
    L = stack.cfg.depth
    layers = []
    for ell, lin in enumerate(chain):
        role = "head" if ell == L else ("encoder" if (not heads or ell < n_shared) else "head-hidden")
        layers.append(Layer(ell, lin.key or "weight", *lin.shape, role))
    notes = []
    if heads and len(heads) > 1:
        notes.append(f"{len(heads)} heads ({', '.join(heads[:4])}{', …' if len(heads) > 4 else ''}); the stack ends with {head}")
    if any(layer.role == "head-hidden" for layer in layers):
        notes.append(f"layers {n_shared}..{L - 1} are hidden layers of {head}, not shared by the heads")
    return Model(stack, str(path), fmt, layers, heads, head, {}, None, "", None, notes)


# ------------------------------------------------------------------------------------------------ profile
def estimate_init_ranks(stack: Stack, seeds: Sequence[int]) -> list[float]:
    """sr(W_ℓ⁰) estimated as the mean over ``seeds`` of the backbone's own init for the stack's layer shapes
    (the encoder drawn as :func:`inrlens.probes.rank.init_weight_ranks` draws it, once per seed)."""
    from .probes.rank import init_weight_ranks

    seeds = list(seeds)
    if not seeds:
        raise ValueError("--init-seeds must be >= 1")
    per = [init_weight_ranks(stack, s) for s in seeds]
    return [sum(col) / len(col) for col in zip(*per)]


@dataclass
class Advice:
    """The profile of one model and the recommendation."""

    model: Model
    profile: Any
    """:class:`inrlens.probes.rank.RankProfile` (sr_w_init, delta_sr and k_delta always filled in)."""
    grid: tuple[int, int]
    init: dict[str, Any]
    """How sr(W⁰) was obtained: {'kind': 'seed', 'seed', 'from'} or {'kind': 'estimate', 'seeds'}."""

    @property
    def k(self) -> int:
        """The recommended freeze depth k* = argmax sr(W)."""
        return int(self.profile.k_w)


def advise(model: Model, grid: tuple[int, int] | None = None, init_seeds: int = DEFAULT_INIT_SEEDS,
           init_seed: int | None = None) -> Advice:
    """Stable-rank profile of ``model`` on ``grid`` (default: the checkpoint's recorded grid, else 64×64) and the
    recommended freeze depth. sr(W⁰) comes from ``init_seed`` when given, else the model's recorded init seed,
    else the mean over ``init_seeds`` draws (seeds 0..init_seeds−1) of the backbone's init."""
    from .probes.rank import argmax, profile

    shape = tuple(int(x) for x in (grid or model.grid or DEFAULT_GRID))
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"--grid: H and W must be >= 1, got {' '.join(map(str, shape))}")
    if isinstance(init_seeds, bool) or int(init_seeds) < 1:
        raise ValueError(f"--init-seeds must be >= 1, got {init_seeds}")
    if init_seed is not None:
        prof = profile(model.stack, shape, init_seed=int(init_seed))
        init = {"kind": "seed", "seed": int(init_seed), "from": "--init-seed"}
    elif model.init_seed is not None:
        prof = profile(model.stack, shape, init_seed=model.init_seed)
        init = {"kind": "seed", "seed": model.init_seed, "from": model.init_seed_from}
    else:
        prof = profile(model.stack, shape)
        seeds = list(range(int(init_seeds)))
        w0 = estimate_init_ranks(model.stack, seeds)
        delta = [a - b for a, b in zip(prof.sr_w, w0)]
        prof = prof._replace(sr_w_init=w0, delta_sr=delta, k_delta=argmax(delta))
        init = {"kind": "estimate", "seeds": seeds}
    return Advice(model, prof, (shape[0], shape[1]), init)


def init_sentence(adv: Advice) -> str:
    """How sr(W⁰) was obtained, in words."""
    i = adv.init
    if i["kind"] == "seed":
        return f"sr(W⁰): the encoder redrawn from its init seed {i['seed']} (read from {i['from']})"
    s = i["seeds"]
    span = f"seed {s[0]}" if len(s) == 1 else f"seeds {s[0]}..{s[-1]}"
    return (f"sr(W⁰): no init seed is recorded for this model; estimated as the mean over {len(s)} draws ({span}) of "
            f"{adv.model.stack.cfg.backbone}'s own init for the same layer shapes")


def profile_rows(adv: Advice) -> list[dict[str, Any]]:
    """One row per hidden layer: key, shape, role, sr_w, sr_h, sr_h_centred, sr_w_init, delta_sr and the marks."""
    p = adv.profile
    rows = []
    for ell in range(adv.model.stack.cfg.depth):
        lay = adv.model.layers[ell]
        marks = "".join(m for m, k in (("W", p.k_w), ("H", p.k_h), ("Δ", p.k_delta)) if k == ell)
        rows.append({"layer": ell, "key": lay.key, "in": lay.fan_in, "out": lay.fan_out, "role": lay.role,
                     "sr_w": p.sr_w[ell], "sr_h": p.sr_h[ell], "sr_h_centred": p.sr_h_centred[ell],
                     "sr_w_init": p.sr_w_init[ell], "delta_sr": p.delta_sr[ell], "argmax": marks})
    return rows


# ------------------------------------------------------------------------------------------------ verification
def _group_signals(signals: Sequence[Any]) -> list[list[int]]:
    from .data import group_by_shape

    return list(group_by_shape(signals).values())


def _verify_fits(encoder: Stack, signals: Sequence[Any], depths: Sequence[Any], seeds: Sequence[int], train: Any, lr_random: float,
                 steps: int, log: Log) -> list[dict[str, Any]]:
    """One row per (depth, image, seed) of :func:`verify`'s short sweep: depth label, image, unit (its index), seed,
    PSNR (None when diverged or not finite), diverged."""
    from . import rules
    from .fit import fit_single, fit_transfer

    enc = encoder
    if enc.weights[-1].shape[0] > 1 or any(t.shape[0] > 1 for t in enc.encoding.values()):
        enc = enc.member(0)  # the shared encoder with one head: the head is redrawn by every transfer anyway
    rows: list[dict[str, Any]] = []
    for depth in depths:
        label = rules.depth_label(depth)
        log(f"verify: depth {label} on {len(signals)} image(s) × {len(seeds)} seed(s), {steps} steps")
        for idx in _group_signals(signals):
            sigs = [signals[i] for i in idx]
            if depth == "random":
                _, fr, res = fit_single(sigs, encoder.cfg, dataclasses.replace(train, lr=lr_random), seeds, progress=False,
                                        with_lpips=False)
            else:
                _, fr, res = fit_transfer(enc, sigs, rules.freeze_of(depth), train, seeds, progress=False, with_lpips=False)
            for j, r in enumerate(res):
                i = idx[j // len(seeds)]
                rows.append({"depth": label, "image": signals[i].name, "unit": i, "seed": r.seed,
                             "psnr": None if r.diverged or not math.isfinite(r.psnr) else float(r.psnr), "diverged": bool(r.diverged)})
    return rows


def _verify_values(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, dict[tuple[int, int], float]]:
    """Depth label → {(unit, seed): PSNR} of the rows with a PSNR (the paired units of the intervals)."""
    values: dict[str, dict[tuple[int, int], float]] = {lab: {} for lab in labels}
    for r in rows:
        if r["psnr"] is not None:
            values[r["depth"]][(r["unit"], r["seed"])] = r["psnr"]
    return values


def verify(encoder: Stack, signals: Sequence[Any], k: int, *, predictors: Mapping[str, int] | None = None,
           seeds: Sequence[int] = (0, 1), steps: int = 200, lr: float | None = None, random_lr: float | None = None,
           device: str = "auto", log: Log | None = None) -> dict[str, Any]:
    """A short freeze sweep from ``encoder`` on ``signals``: no-freeze, every k = 0..L−1 and random init, each on
    every (image, seed), with :func:`inrlens.fit.fit_transfer` / :func:`inrlens.fit.fit_single`. Returns the
    per-depth PSNR mean ± sample std, the best-k set (paired 95% t intervals over (image, seed) units against the
    best depth, :func:`inrlens.stats.best_set`), whether ``k`` (and each of ``predictors``) is in it, and the paired
    gain of ``k`` over no-freeze with its interval.

    lr: ``lr`` else the protocol's transfer rate for the freeze fits; ``random_lr`` else the backbone's
    single-signal rate for the random-init baseline (:func:`inrlens.rules.lr_for`)."""
    from . import rules, stats
    from .config import TrainConfig

    log = log or (lambda s: None)
    seeds = rules.check_seeds(seeds, "--seeds")
    if not signals:
        raise ValueError("--verify: no images to fit")
    if isinstance(steps, bool) or int(steps) < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    L = encoder.cfg.depth
    if not 0 <= k < L:
        raise ValueError(f"recommended depth {k} is outside 0..{L - 1}")
    backbone = encoder.cfg.backbone
    lr_t = rules.lr_for("transfer", backbone, lr)
    lr_r = rules.lr_for("random", backbone, random_lr)
    train = TrainConfig(steps=int(steps), lr=lr_t, device=device, log_every=max(1, int(steps)))
    depths: list[Any] = ["none", *range(L), "random"]
    rows = _verify_fits(encoder, signals, depths, seeds, train, lr_r, steps, log)
    labels = [rules.depth_label(d) for d in depths]
    values = _verify_values(rows, labels)
    per_depth = []
    for lab in labels:
        m, s = rules.mean_std(values[lab].values())
        per_depth.append({"depth": lab, "n": len(values[lab]), "psnr_mean": m, "psnr_std": s})
    bs = stats.best_set(values)

    def judge(kk: int) -> str:
        a = stats.agreement(str(kk), bs, labels)
        if a in ("agrees", "disagrees"):
            return a
        return f"inconclusive (n = {len(values[str(kk)])})" if a == "undecided" else a

    gm, glo, ghi, gn = stats.mean_ci(stats.pair_diffs(values[str(k)], values["none"]))
    return {
        "images": [s.name for s in signals], "shapes": sorted({s.shape for s in signals}),
        "seeds": list(seeds), "steps": int(steps), "lr": lr_t, "random_lr": lr_r, "device": str(device),
        "units": len(signals) * len(seeds),
        "depths": per_depth, "best": bs["best"], "best_set": list(bs["set"]),
        "diffs": {d: {"mean": c[0], "lo": c[1], "hi": c[2], "n": c[3]} for d, c in bs["diffs"].items()},
        "recommended": int(k), "in_best_set": str(k) in bs["set"], "verdict": judge(k),
        "gain_vs_none": {"mean": gm, "lo": glo, "hi": ghi, "n": gn,
                         "verdict": stats.verdict(glo, ghi, True, n=gn)},
        "predictors": {name: {"k": int(kk), "in_best_set": str(kk) in bs["set"], "verdict": judge(int(kk))}
                       for name, kk in (predictors or {}).items() if kk is not None},
        "rows": rows,
    }


# ------------------------------------------------------------------------------------------------ report
def report_dict(adv: Advice, verification: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything advise found, as the JSON it writes (see docs/advise.md for the fields)."""
    m, p = adv.model, adv.profile
    return {
        "model": m.path, "format": m.format, "backbone": m.stack.cfg.backbone, "net": to_dict(m.stack.cfg),
        "out_features": m.stack.out_features, "layers": [dataclasses.asdict(lay) for lay in m.layers],
        "heads": list(m.heads), "head": m.head, "notes": list(m.notes), "grid": list(adv.grid), "init": dict(adv.init),
        "profile": {"sr_w": p.sr_w, "sr_h": p.sr_h, "sr_h_centred": p.sr_h_centred, "sr_w_init": p.sr_w_init,
                    "delta_sr": p.delta_sr, "k_w": p.k_w, "k_h": p.k_h, "k_h_centred": p.k_h_centred, "k_delta": p.k_delta},
        "recommendation": {"k": adv.k, "rule": "argmax sr(W)", "freeze": f"layers 0..{adv.k}", "argmax_sr_h": p.k_h,
                           "argmax_sr_h_centred": p.k_h_centred, "argmax_delta_sr": p.k_delta},
        "verify": None if verification is None else dict(verification),
    }


def _f(v: Any, d: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def recommendation_lines(adv: Advice) -> list[str]:
    p = adv.profile
    return [f"recommended freeze depth k* = argmax sr(W) = {adv.k}: freeze layers 0..{adv.k}, re-initialise and train the rest",
            f"beside it: argmax sr(H) = {p.k_h} (centred: {p.k_h_centred}), argmax Δsr = {p.k_delta}",
            init_sentence(adv)]


def verification_lines(v: Mapping[str, Any]) -> list[str]:
    from .stats import fmt_ci

    g = v["gain_vs_none"]
    k = v["recommended"]
    where = "inside" if v["in_best_set"] else "outside"
    lines = [f"best depth {v['best']}; best-k set (depths whose paired 95% interval against the best reaches 0): "
             f"{', '.join(v['best_set'])}",
             f"verdict on k* = {k}: {v['verdict']} (k* = {k} is {where} the best-k set)",
             f"gain of k* = {v['recommended']} over no-freeze: {fmt_ci(g['mean'], g['lo'], g['hi'], g['n'])} dB "
             f"(k* better than no-freeze: {g['verdict']})"]
    for name, pr in v.get("predictors", {}).items():
        lines.append(f"verdict on {name} = {pr['k']}: {pr['verdict']}")
    return lines


def to_markdown(adv: Advice, verification: Mapping[str, Any] | None = None) -> str:
    """The profile and the verification as a markdown page."""
    m = adv.model
    cfg = m.stack.cfg
    out = [f"# inrlens advise: {m.path}", "",
           f"{m.format} model read as a {cfg.backbone} stack: {cfg.depth} hidden layers of width {cfg.width}, "
           f"{m.stack.out_features} output(s); sr(H) on the {adv.grid[0]}×{adv.grid[1]} grid.", ""]
    out += [f"- {n}" for n in m.notes] + ([""] if m.notes else [])
    out += ["| layer | key | in | out | role | sr(W) | sr(H) | sr(H) centred | sr(W⁰) | Δsr | argmax |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in profile_rows(adv):
        out.append(f"| {r['layer']} | `{r['key']}` | {r['in']} | {r['out']} | {r['role']} | {_f(r['sr_w'])} | {_f(r['sr_h'])} | "
                   f"{_f(r['sr_h_centred'])} | {_f(r['sr_w_init'])} | {_f(r['delta_sr'], 3)} | {r['argmax']} |")
    out += ["", "argmax marks: W = argmax sr(W), H = argmax sr(H) (uncentred), Δ = argmax Δsr.", ""]
    out += [f"- {line}" for line in recommendation_lines(adv)]
    if verification is not None:
        v = verification
        out += ["", "## Verification", "",
                f"{len(v['images'])} image(s) × seeds {', '.join(map(str, v['seeds']))}, {v['steps']} Adam steps; "
                f"lr {v['lr']:g} (freeze fits), {v['random_lr']:g} (random init). PSNR in dB, mean ± sample std over (image, seed).", "",
                "| depth | n | PSNR | in best-k set |", "|---|---|---|---|"]
        for d in v["depths"]:
            out.append(f"| {d['depth']} | {d['n']} | {_f(d['psnr_mean'])} ± {_f(d['psnr_std'])} | "
                       f"{'yes' if d['depth'] in v['best_set'] else ''} |")
        out += [""] + [f"- {line}" for line in verification_lines(v)]
    return "\n".join(out) + "\n"


def check_out(out: str | os.PathLike | None) -> None:
    """--out must be a folder (or not exist yet); checked before any work."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")


def write_report(out: str | os.PathLike, adv: Advice, verification: Mapping[str, Any] | None = None) -> list[Path]:
    """OUT/advise.json and OUT/advise.md (each written atomically)."""
    from .store import atomic_write_json, atomic_write_text

    out = Path(out)
    check_out(out)
    return [atomic_write_json(out / "advise.json", report_dict(adv, verification)),
            atomic_write_text(out / "advise.md", to_markdown(adv, verification))]


__all__ = ["ACTIVATIONS", "Linear", "Layer", "Model", "Advice", "read_tensors", "find_linears", "detect_heads", "arrange",
           "check_chain", "backbone_for", "parse_options", "build_stack", "load_inrlens", "load_model",
           "estimate_init_ranks", "advise", "init_sentence", "profile_rows", "verify", "report_dict", "to_markdown",
           "check_out", "write_report"]
