"""One Adam loop for every regime: single-signal stacks, STRAINER cohorts and freeze-k transfer.

The loop optimises a :class:`~inrlens.nets.Stack` from layer ``start`` upward. Layers below ``start`` are
constants on a fixed grid (frozen transfer layers, a fixed input encoding such as FFMLP's Fourier features),
so their output is computed once before the loop (the *frozen-prefix cache*) and every step runs only the
trainable layers. A trainable input encoding counts as part of layer 0: it trains when ``start`` = 0 (and is
then recomputed inside every step, never cached) and is frozen and cached with the prefix otherwise.

Loss = Σ_members MSE_member (sum of per-member means over pixels and channels, on [-1, 1] pixels). With
independent members this makes one Adam over the stacked tensors equal B separate Adams; for a cohort it is
Eq. 2 of the paper. Never average over members: that would rescale each member's gradient by 1/B.

Long loops (cohorts) can be interrupted and continued: :func:`train` hands a :class:`LoopState` (weights, Adam
moments and step counts, the curve so far, the divergence mask) to a ``checkpoint`` callback every
``TrainConfig.checkpoint_every`` steps, and continues from one given as ``resume`` exactly as if it had never
stopped (the loop draws no random numbers; on CPU the result is bit-identical). :mod:`inrlens.trainstate` keeps
such a state in a cohort's folder.
"""

from __future__ import annotations

import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .config import NetConfig, TrainConfig
from .data import Signal, grid, group_by_shape, to_unit
from .loopstate import ADAM_KEYS, LoopState, _restore, _snapshot, stack_tensors, state_mismatch  # noqa: F401  (importable from here)
from .metrics import all_metrics, psnr_from_pm1_mse
from .nets import Stack, check_reinit, cohort_stack, transfer_stack
from .rules import lr_for


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → CUDA when available, else CPU; anything else as given (clear error if CUDA is missing)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine; use 'cpu' or 'auto'")
    return dev


def set_precision(tf32: bool) -> None:
    """Set TF32 explicitly (never inherit a global default): fp32 matmuls unless tf32 is asked for."""
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)


_FUSED_OK: dict[str, bool] = {}


def fused_adam_available(device: torch.device) -> bool:
    """Whether this torch build has a fused Adam kernel for float32 on this device type (CUDA; CPU since 2.4)."""
    kind = device.type
    if kind not in _FUSED_OK:
        try:
            p = torch.nn.Parameter(torch.zeros(2, device=device))
            p.grad = torch.ones_like(p)
            torch.optim.Adam([p], lr=1e-3, fused=True).step()
            _FUSED_OK[kind] = True
        except (RuntimeError, TypeError, ValueError):
            _FUSED_OK[kind] = False
    return _FUSED_OK[kind]


def use_fused_adam(device: torch.device, train: TrainConfig) -> bool:
    """The Adam kernel train() uses: fused when asked for (TrainConfig.fused_adam) and available here."""
    return bool(train.fused_adam and fused_adam_available(device))


def runtime_info(device: torch.device, train: TrainConfig, prefix_cache: bool = True) -> dict[str, Any]:
    """Precision, device, speed-up switches and library versions recorded with every result row."""
    import numpy

    from . import allocator, nets

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "dtype": "float32",
        "tf32": bool(train.tf32 and device.type == "cuda"),
        "compile": bool(train.compile),
        "fused_adam": use_fused_adam(device, train),
        "fold_omega": bool(nets.FOLD_OMEGA),
        "fused_bias": bool(nets.FUSED_BIAS),
        "prefix_cache": bool(prefix_cache),
        "keep_freed_memory": allocator.kept(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
    }


@dataclass
class Group:
    """Members that share one coordinate grid: their indices in the stack and their targets."""

    coords: Tensor
    """(P, 2) grid."""
    targets: Tensor
    """(B_g, P, C) pixels in [-1, 1]."""
    members: list[int]
    """Stack member index of each target row (for a cohort: the head index)."""
    shape: tuple[int, int]
    """(H, W) of the grid."""


class FitResult(NamedTuple):
    """What one run of the loop returns."""

    stack: Stack
    """The trained stack (same object that was passed in)."""
    steps: list[int]
    """Step numbers of the PSNR curve."""
    curve: Tensor
    """(T, B) training PSNR (dB, on [0,1]) per recorded step and member, measured before that step's update."""
    diverged: Tensor
    """(B,) bool: the member's loss became NaN/Inf; it was masked out and its result is not valid."""
    steps_run: int
    """Adam steps actually taken (fewer than asked when a target PSNR stopped the run)."""
    seconds: float
    """Wall time of the loop (synchronised)."""


STATE_SECONDS = 60.0
"""With ``TrainConfig.checkpoint_every`` None, :func:`train` hands a state to its ``checkpoint`` callback once this
many seconds of training have passed since the last one (bounded loss on a kill, negligible writing cost)."""


def run_members(stack: Stack, h: Tensor, start: int, idx: Tensor | None) -> Tensor:
    """Layers start..L of the members idx (None = all, in order) on input h (B_h, P, d) → (B_g, P, C)."""
    return stack.run(h, start, None, idx)


def make_optimizer(stack: Stack, start: int, lr: float, fused: bool = False) -> torch.optim.Adam:
    """Adam over layers ≥ start only; layers < start get requires_grad False (frozen constants).

    A trainable input encoding belongs to layer 0: optimised (first in the list) when start = 0, frozen otherwise."""
    L = stack.cfg.depth
    params = []
    for p in stack.encoding_params():
        p.requires_grad_(start == 0)
        if start == 0:
            params.append(p)
    for ell in range(L + 1):
        for p in (stack.weights[ell], stack.biases[ell]):
            p.requires_grad_(ell >= start)
            if ell >= start:
                params.append(p)
    if not params:
        raise ValueError(f"nothing to train: start={start} is past the head (L={L})")
    return torch.optim.Adam(params, lr=lr, fused=True) if fused else torch.optim.Adam(params, lr=lr)


def prefix(stack: Stack, coords: Tensor, start: int, idx: Tensor | None = None) -> Tensor:
    """Input of layer ``start`` on a grid, with no graph: γ(x) followed by the (frozen) layers 0..start−1, for
    the members idx (None = all). Not for training a trainable encoding (start = 0): see :func:`caches_prefix`."""
    with torch.no_grad():
        return stack.run(stack.embed(coords, idx), 0, start, idx).detach()


def caches_prefix(stack: Stack, start: int) -> bool:
    """Whether the input of layer ``start`` is a constant the loop may compute once: always, except when a
    trainable encoding trains (start = 0), whose γ(x) must be recomputed inside every step."""
    return not (start == 0 and stack.encoding_params())


def stop_psnr(mse: Tensor, alive: Tensor, metric: str = "mean_psnr") -> float:
    """The PSNR (dB) a target-PSNR stop compares with, from the members' MSEs on [-1, 1] pixels (``mse`` (B,))
    over the members still ``alive`` (NaN when none is): 'mean_psnr' = mean_i psnr_from_pm1_mse(MSE_i);
    'summed_mse_psnr' = psnr_from_pm1_mse(Σ_i MSE_i) = 10·log10(4 / Σ_i MSE_i) (``TrainConfig.stop_metric``)."""
    m = torch.as_tensor(mse, dtype=torch.float64)[torch.as_tensor(alive, dtype=torch.bool)]
    if not m.numel():
        return math.nan
    if metric == "mean_psnr":
        return float(psnr_from_pm1_mse(m).mean())
    if metric == "summed_mse_psnr":
        return float(psnr_from_pm1_mse(m.sum()))
    raise ValueError(f"unknown stop metric {metric!r}; use 'mean_psnr' or 'summed_mse_psnr'")


def reached_target(mse: Tensor, alive: Tensor, train_cfg: TrainConfig) -> bool:
    """Whether the target-PSNR stop of ``train_cfg`` fires on these member MSEs (never when target_psnr is None)."""
    if train_cfg.target_psnr is None:
        return False
    return stop_psnr(mse, alive, train_cfg.stop_metric) >= train_cfg.target_psnr


def _optimizer_for(stack: Stack, train_cfg: TrainConfig, start: int, lr: float | None, resume: LoopState | None) -> torch.optim.Adam:
    """The loop's Adam (:func:`make_optimizer`; lr None = the single-fit rule of :func:`inrlens.rules.lr_for`),
    with ``resume``'s tensors and Adam state restored once :func:`state_mismatch` finds it fits (else ValueError)."""
    device = stack.weights[-1].device
    lr = lr if lr is not None else lr_for("single", stack.cfg.backbone, train_cfg.lr)
    opt = make_optimizer(stack, start, lr, fused=use_fused_adam(device, train_cfg))
    if resume is not None:
        why = state_mismatch(stack, resume, train_cfg, start)
        if why is not None:
            raise ValueError(f"cannot resume this loop from the state given: {why}")
        _restore(stack, opt, resume)
    return opt


def _member_mse_fn(stack: Stack, groups: Sequence[Group], start: int, cache: bool, compile: bool) -> Callable[[], Tensor]:
    """The loop's forward pass: a function returning each member's MSE, (B,) in member order. With ``cache`` the
    input of layer ``start`` is computed once per group (a frozen prefix never changes on a fixed grid); with
    ``compile`` the function is ``torch.compile``d."""
    device = stack.weights[-1].device
    B = stack.members
    idxs = [None if g.members == list(range(B)) else torch.tensor(g.members, device=device) for g in groups]
    cached = [prefix(stack, g.coords, start, idx) if cache else None for g, idx in zip(groups, idxs)]
    order = torch.tensor([m for g in groups for m in g.members], device=device)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel(), device=device)

    def member_mse() -> Tensor:
        parts = []
        for g, h, idx in zip(groups, cached, idxs):
            h_in = h if h is not None else stack.run(stack.embed(g.coords, idx), 0, start, idx)
            pred = run_members(stack, h_in, start, idx)  # (B_g, P, C)
            parts.append(((pred - g.targets) ** 2).mean(dim=(1, 2)))
        mse = torch.cat(parts)
        return mse if len(groups) == 1 and idxs[0] is None else mse[inv]  # (B,) in member order

    return torch.compile(member_mse, dynamic=False) if compile else member_mse


def _loop_record(members: int, device: torch.device, resume: LoopState | None) -> tuple[Tensor, list[int], list[Tensor], int, float]:
    """Where the loop starts: (alive mask, curve steps, curve rows, first step, training seconds so far) — fresh, or
    continued from ``resume``."""
    if resume is None:
        return torch.ones(members, dtype=torch.bool, device=device), [], [], 0, 0.0
    return (resume.alive.to(device).clone(), list(resume.steps), list(resume.curve.clone().unbind(0)), resume.step,
            float(resume.seconds))


def _adam_step(member_mse: Callable[[], Tensor], opt: torch.optim.Optimizer, alive: Tensor) -> tuple[Tensor, Tensor]:
    """One update on Σ MSE over the members still alive; returns this step's MSEs (before the update) and the
    members alive after it (a non-finite loss masks its member out)."""
    mse = member_mse()
    alive = alive & torch.isfinite(mse)
    loss = torch.where(alive, mse, torch.zeros_like(mse)).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return mse, alive


def _record_and_stop(mse: Tensor, alive: Tensor, step: int, steps: list[int], curve: list[Tensor], bar: Any,
                     train_cfg: TrainConfig) -> bool:
    """Append this step's PSNRs to the curve, show their mean, and say whether the loop stops here (no member
    alive, or the target PSNR reached: :func:`reached_target`)."""
    p = psnr_from_pm1_mse(mse.detach().cpu())
    steps.append(step)
    curve.append(p)
    live = p[alive.cpu()]
    mean_psnr = float(live.mean()) if live.numel() else math.nan
    if bar is not None:
        bar.set_postfix(psnr=f"{mean_psnr:.2f}", refresh=False)
    if not bool(alive.any()):
        return True
    return train_cfg.target_psnr is not None and reached_target(mse.detach().cpu(), alive.cpu(), train_cfg)


class _LoopClock:
    """Training wall time (continuing a resumed state's, without the checkpoint callback's own time) and when the
    next state is due: every ``every`` steps, or (every None) :data:`STATE_SECONDS` after the previous one."""

    def __init__(self, seconds0: float, every: int | None):
        self.seconds0, self.every = seconds0, every
        self.t0 = self.last_state = time.perf_counter()
        self.paused = 0.0  # time spent in the checkpoint callback, left out of `seconds`

    def state_due(self, steps_run: int) -> float | None:
        """The time now when a state is due after ``steps_run`` steps, else None."""
        now = time.perf_counter()
        every = self.every
        due = (every is not None and steps_run % every == 0) or (every is None and now - self.last_state >= STATE_SECONDS)
        return now if due else None

    def elapsed(self, now: float) -> float:
        """Training seconds up to ``now``."""
        return self.seconds0 + now - self.t0 - self.paused

    def handed(self, now: float) -> None:
        """A state due at ``now`` was handed over: its callback's time is not training time."""
        self.last_state = time.perf_counter()
        self.paused += self.last_state - now

    def seconds(self) -> float:
        return self.seconds0 + time.perf_counter() - self.t0 - self.paused


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _progress_bar(progress: bool, total: int, initial: int, desc: str) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _finite_members(stack: Stack, alive: Tensor) -> Tensor:
    """``alive`` less the members with a non-finite parameter (the last update can overflow after the last finite
    loss)."""
    with torch.no_grad():
        for w in [*stack.encoding_params(), *stack.weights, *stack.biases]:
            alive = alive & torch.isfinite(w).flatten(1).all(1)  # (B_ℓ,) broadcasts over B
    return alive


def train(
    stack: Stack,
    groups: Sequence[Group],
    train_cfg: TrainConfig,
    start: int = 0,
    lr: float | None = None,
    desc: str = "fit",
    progress: bool = True,
    use_prefix_cache: bool = True,
    checkpoint: Callable[[LoopState], Any] | None = None,
    resume: LoopState | None = None,
) -> FitResult:
    """Adam on layers ≥ start of ``stack`` to fit ``groups``; layers < start are frozen (requires_grad False).

    Returns per-member PSNR curves. Members whose loss turns non-finite are masked out of the loss (their own
    parameters only are affected; the rest of the stack carries on) and flagged in ``diverged``.

    ``checkpoint``: called with a :class:`LoopState` after every ``train_cfg.checkpoint_every``-th step (None:
    after the first step that ends :data:`STATE_SECONDS` after the previous state), never after the last step or
    a stop; an exception it raises ends the loop. ``resume``: a state of this very loop (same stack, groups,
    config, start and lr) to continue from; the result equals that of the loop never interrupted (one it does
    not fit, see :func:`state_mismatch`, is a ValueError before anything changes). ``seconds`` counts the
    training before the state too, and never the callback's own time.
    """
    device = stack.weights[-1].device
    opt = _optimizer_for(stack, train_cfg, start, lr, resume)
    member_mse = _member_mse_fn(stack, groups, start, use_prefix_cache and caches_prefix(stack, start), train_cfg.compile)
    alive, steps, curve, step0, seconds0 = _loop_record(stack.members, device, resume)
    bar = _progress_bar(progress, train_cfg.steps, step0, desc)
    _sync(device)
    clock = _LoopClock(seconds0, train_cfg.checkpoint_every)
    steps_run = step0
    for step in range(step0, train_cfg.steps):
        mse, alive = _adam_step(member_mse, opt, alive)
        steps_run = step + 1
        last = step == train_cfg.steps - 1
        if (step % train_cfg.log_every == 0 or last) and _record_and_stop(mse, alive, step, steps, curve, bar, train_cfg):
            break
        if bar is not None:
            bar.update(1)
        if checkpoint is not None and not last and (now := clock.state_due(steps_run)) is not None:
            checkpoint(_snapshot(stack, opt, steps_run, alive, steps, curve, clock.elapsed(now)))
            clock.handed(now)
    _sync(device)
    seconds = clock.seconds()
    if bar is not None:
        bar.close()
    alive = _finite_members(stack, alive)
    for p in stack.parameters():
        p.requires_grad_(False)
    return FitResult(stack, steps, torch.stack(curve), ~alive.cpu(), steps_run, seconds)


# ---------------------------------------------------------------------------------------------- regimes
@dataclass
class MemberResult:
    """Final outcome of one member (image × seed) of a fit."""

    image: str
    seed: int
    psnr: float
    ssim: float
    lpips: float
    train_psnr: float
    """Last training-curve PSNR (before the final update, unclamped output)."""
    diverged: bool
    curve: list[float] = field(default_factory=list)
    curve_steps: list[int] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def evaluate(stack: Stack, groups: Sequence[Group], names: Sequence[str], with_lpips: bool = True) -> list[dict[str, float]]:
    """Final metrics per member on the clamped [0,1] output: psnr, ssim, lpips (NaN when unavailable)."""
    B = stack.members
    out: list[dict[str, float]] = [dict() for _ in range(B)]
    with torch.no_grad():
        for g in groups:
            idx = None if g.members == list(range(B)) else torch.tensor(g.members, device=g.coords.device)
            pred = run_members(stack, prefix(stack, g.coords, 0, idx), 0, idx)  # (B_g, P, C)
            h, w = g.shape
            c = pred.shape[-1]
            x = to_unit(pred).reshape(-1, h, w, c).cpu()
            y = to_unit(g.targets).reshape(-1, h, w, c).cpu()
            m = all_metrics(x, y, with_lpips=with_lpips)
            for j, member in enumerate(g.members):
                out[member] = {k: float(v[j]) for k, v in m.items()}
    for i, name in enumerate(names):
        out[i]["image"] = name
    return out


def _groups_for(signals: Sequence[Signal], device: torch.device, repeats: int = 1) -> list[Group]:
    """One Group per distinct shape; with repeats r, signal i occupies members i·r .. i·r + r − 1."""
    groups = []
    for shape, idx in group_by_shape(signals).items():
        members = [i * repeats + r for i in idx for r in range(repeats)]
        tg = torch.stack([signals[i].targets() for i in idx for _ in range(repeats)]).to(device)
        groups.append(Group(grid(*shape, device=device), tg, members, shape))
    return groups


def _results(fr: FitResult, metrics: list[dict[str, float]], seeds: Sequence[int]) -> list[MemberResult]:
    res = []
    for i, m in enumerate(metrics):
        curve = fr.curve[:, i].tolist()
        ok = not fr.diverged[i]
        res.append(MemberResult(m["image"], int(seeds[i]), m["psnr"] if ok else math.nan, m["ssim"] if ok else math.nan,
                                m["lpips"] if ok else math.nan, curve[-1], bool(fr.diverged[i]), curve, list(fr.steps)))
    return res


def _check_same_shape(signals: Sequence[Signal], what: str) -> None:
    shapes = {s.shape for s in signals}
    if len(shapes) != 1:
        raise ValueError(f"{what}: one stack needs signals of one shape, got {sorted(shapes)}; group them first")
    chans = {s.channels for s in signals}
    if len(chans) != 1:
        raise ValueError(f"{what}: signals mix {sorted(chans)} channels; harmonise them first")


def _chunk_size(net: NetConfig, signal: Signal, start: int, device: torch.device, n: int, chunk: int | None) -> int:
    """Members per stack: ``chunk`` when given, else as many as fit the memory budget (never OOM by default)."""
    if chunk is not None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        return int(chunk)
    from .memory import members_per_chunk

    h, w = signal.shape
    return min(n, members_per_chunk(net, h * w, signal.channels, start, device=device))


def _chunk_group(signals: Sequence[Signal], ids: Sequence[int], repeats: int, device: torch.device) -> Group:
    """One Group for members ``ids`` (member m is signal m // repeats) of same-shape signals."""
    shape = signals[0].shape
    tg = torch.stack([signals[m // repeats].targets() for m in ids]).to(device)  # (B_chunk, P, C)
    return Group(grid(*shape, device=device), tg, list(range(len(ids))), shape)


def _merge(parts: list[tuple[Stack, FitResult, list[MemberResult]]], shared: set[int]) -> tuple[Stack, FitResult, list[MemberResult]]:
    """Concatenate chunk results along the member axis; layers in ``shared`` (frozen, B_ℓ = 1) come from chunk 0,
    and so do the encoding tensors when -1 is in ``shared`` (a cohort's encoding, not trained per member)."""
    if len(parts) == 1:
        return parts[0]
    stacks = [p[0] for p in parts]
    s0 = stacks[0]
    cat = lambda ts: torch.cat([t.detach() for t in ts])  # noqa: E731
    ws = [s0.weights[ell].detach() if ell in shared else cat([s.weights[ell] for s in stacks]) for ell in range(s0.depth + 1)]
    bs = [s0.biases[ell].detach() if ell in shared else cat([s.biases[ell] for s in stacks]) for ell in range(s0.depth + 1)]
    encoding = {k: t.detach() if -1 in shared else cat([s.encoding[k] for s in stacks]) for k, t in s0.encoding.items()}
    stack = Stack(s0.cfg, s0.out_features, encoding, ws, bs)
    for p in stack.parameters():
        p.requires_grad_(False)
    frs = [p[1] for p in parts]
    steps = max((f.steps for f in frs), key=len)
    curves = []
    for f in frs:  # chunks that stopped early (target PSNR) are padded with NaN
        c = torch.full((len(steps), f.curve.shape[1]), math.nan, dtype=f.curve.dtype)
        c[: f.curve.shape[0]] = f.curve
        curves.append(c)
    fr = FitResult(stack, steps, torch.cat(curves, dim=1), torch.cat([f.diverged for f in frs]),
                   max(f.steps_run for f in frs), sum(f.seconds for f in frs))
    return stack, fr, [r for p in parts for r in p[2]]


def fit_single(signals: Sequence[Signal], net: NetConfig, train_cfg: TrainConfig, seeds: Sequence[int] = (0,),
               progress: bool = True, with_lpips: bool = True, chunk: int | None = None) -> tuple[Stack, FitResult, list[MemberResult]]:
    """Random-init fits of every (signal × seed) (signals of one shape). Member order: signal-major.

    The members are trained in stacks of ``chunk`` (None = as many as fit the memory budget, see
    :func:`inrlens.memory.members_per_chunk`), and the results concatenated; each member's fit is the same
    whatever the chunking (tests/test_perf_equivalence.py)."""
    _check_same_shape(signals, "fit_single")
    device = resolve_device(train_cfg.device)
    set_precision(train_cfg.tf32)
    member_seeds = [s for _ in signals for s in seeds]
    names = [s.name for s in signals for _ in seeds]
    n = len(member_seeds)
    cap = _chunk_size(net, signals[0], 0, device, n, chunk)
    parts = []
    for lo in range(0, n, cap):
        ids = list(range(lo, min(n, lo + cap)))
        stack = Stack.init(net, signals[0].channels, [member_seeds[i] for i in ids]).to(device)
        groups = [_chunk_group(signals, ids, len(seeds), device)]
        fr = train(stack, groups, train_cfg, start=0, desc=f"fit {net.backbone}", progress=progress)
        parts.append((stack, fr, _results(fr, evaluate(stack, groups, [names[i] for i in ids], with_lpips),
                                          [member_seeds[i] for i in ids])))
    return _merge(parts, shared=set())


def fit_cohort(signals: Sequence[Signal], net: NetConfig, train_cfg: TrainConfig, seed: int = 0,
               progress: bool = True, with_lpips: bool = False, *, state: str | os.PathLike | None = None,
               resume: bool = True, run: str = "") -> tuple[Stack, FitResult, list[MemberResult]]:
    """STRAINER: shared encoder + one head per signal; loss Σ_i MSE_i (Eq. 2). Signals may differ in shape
    (one grid per shape; the encoder runs once per grid for all its heads), not in channel count.

    ``state``: a training-state file (:mod:`inrlens.trainstate`; a cohort folder's is
    ``trainstate.path_in(folder)``). The loop writes its state there every ``train_cfg.checkpoint_every`` steps
    (None: about once a minute) and, with ``resume``, first continues from the state it finds there when that
    was written for this very cohort: ``run`` (the caller's key of the run) with the same architecture,
    schedule, lr, seed, device and images. A state that cannot be used is ignored with a one-line warning and
    training starts at step 0. The result equals an uninterrupted fit's (bit-identical on CPU). The file is
    left in place: remove it (:func:`inrlens.trainstate.remove`) once the cohort is saved."""
    if len({s.channels for s in signals}) != 1:
        raise ValueError("fit_cohort: signals mix channel counts; harmonise them first (DataConfig.channels)")
    device = resolve_device(train_cfg.device)
    from .memory import check_cohort

    check_cohort(net, [s.shape for s in signals], signals[0].channels, device=device)  # one stack: before any allocation
    set_precision(train_cfg.tf32)
    stack = cohort_stack(net, signals[0].channels, len(signals), seed).to(device)
    groups = _groups_for(signals, device)
    lr = lr_for("cohort", net.backbone, train_cfg.lr)
    hook, start_from = None, None
    if state is not None:
        from . import trainstate

        ident = trainstate.identity(run, net, replace(train_cfg, lr=lr), seed, device, use_fused_adam(device, train_cfg), signals)
        trainstate.clear_temps(state)  # half-written states of a killed run
        if resume:
            start_from = trainstate.load(state, ident)
            why = None if start_from is None else state_mismatch(stack, start_from, train_cfg)
            if why is not None:
                warnings.warn(f"{state}: training state not used ({why}); training starts at step 0", RuntimeWarning, stacklevel=2)
                start_from = None
        else:
            trainstate.remove(state)
        hook = lambda st: trainstate.save(state, st, ident)  # noqa: E731
    fr = train(stack, groups, train_cfg, start=0, lr=lr, desc=f"cohort {net.backbone}", progress=progress,
               checkpoint=hook, resume=start_from)
    return stack, fr, _results(fr, evaluate(stack, groups, [s.name for s in signals], with_lpips), [seed] * len(signals))


def fit_transfer(encoder: Stack, signals: Sequence[Signal], freeze: int | None, train_cfg: TrainConfig,
                 seeds: Sequence[int] = (0,), progress: bool = True, with_lpips: bool = True,
                 use_prefix_cache: bool = True, chunk: int | None = None,
                 reinit: str = "fresh") -> tuple[Stack, FitResult, list[MemberResult]]:
    """Freeze-k test-time fit of every (signal × seed) from a cohort encoder; freeze=None is the no-freeze
    baseline. Trains only layers > k (all, and a trainable encoding, for None); lr defaults to
    ``rules.lr_for("transfer", …)``. Members are trained in stacks of ``chunk`` (None = from the memory
    budget), as in :func:`fit_single`. ``reinit``: how the re-initialised layers are drawn
    (:func:`inrlens.nets.transfer_stack`; 'fresh' by default)."""
    _check_same_shape(signals, "fit_transfer")
    device = resolve_device(train_cfg.device)
    set_precision(train_cfg.tf32)
    member_seeds = [s for _ in signals for s in seeds]
    names = [s.name for s in signals for _ in seeds]
    start = 0 if freeze is None else freeze + 1
    lr = lr_for("transfer", encoder.cfg.backbone, train_cfg.lr)
    tag = "none" if freeze is None else str(freeze)
    n = len(member_seeds)
    L = encoder.cfg.depth
    if freeze is not None and not (0 <= freeze < L):  # before sizing chunks: same message as transfer_stack
        raise ValueError(f"freeze depth must be in 0..{L - 1} (or None for no freeze), got {freeze}")
    check_reinit(reinit)
    cap = _chunk_size(encoder.cfg, signals[0], start, device, n, chunk)
    enc = encoder  # transfer_stack copies what it needs; never move the caller's encoder (nn.Module.cpu is in place)
    parts = []
    for lo in range(0, n, cap):
        ids = list(range(lo, min(n, lo + cap)))
        stack = transfer_stack(enc, freeze, [member_seeds[i] for i in ids], signals[0].channels, reinit).to(device)
        groups = [_chunk_group(signals, ids, len(seeds), device)]
        fr = train(stack, groups, train_cfg, start=start, lr=lr, desc=f"transfer k={tag}", progress=progress,
                   use_prefix_cache=use_prefix_cache)
        parts.append((stack, fr, _results(fr, evaluate(stack, groups, [names[i] for i in ids], with_lpips),
                                          [member_seeds[i] for i in ids])))
    # frozen layers 0..k are shared by all members, and so is the cohort's encoding (-1) unless it trains per member
    per_member_encoding = freeze is None and encoder.backbone.encoding_trainable
    shared = set(range(start)) | (set() if per_member_encoding else {-1})
    return _merge(parts, shared=shared)
