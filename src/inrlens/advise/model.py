"""Reading a foreign (or inrlens) coordinate MLP into a one-encoder stack: layers, heads, backbone, loading."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import NetConfig, from_dict
from ..nets import Stack
from ..probes.rank import recorded_init_seed

ACTIVATIONS = {"sine": "siren", "relu": "ffmlp"}
"""Activation words → the registered backbone they mean (any registered backbone name is accepted as well)."""
DEFAULT_OMEGA0 = 30.0
"""SIREN ω₀ assumed for a foreign sine model when --omega0 / --omega0-first are not given [SIREN]."""
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "net", "params")
"""Keys under which a training checkpoint commonly nests its state_dict (used when the top level holds no tensors)."""


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
    from ..backbones import backbone_names

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
    from ..backbones import get_backbone

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
    from ..backbones.wire import complex_blocks, realify

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
    from ..store import load_stack

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
