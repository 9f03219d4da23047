"""The resumable state of a training loop: :class:`LoopState` (a stack's tensors, Adam's moments and step counts,
the curve so far, the divergence mask), taken from and restored into a stack and its Adam, and the check that a
state fits a loop (:func:`state_mismatch`). :func:`inrlens.fit.train` hands states to its ``checkpoint`` callback
and continues from one given as ``resume``; :mod:`inrlens.trainstate` keeps one in a cohort's folder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import TrainConfig
from .nets import Stack


@dataclass
class LoopState:
    """Everything :func:`inrlens.fit.train` needs to continue a loop exactly where it stopped (all tensors on the CPU)."""

    step: int
    """Adam steps taken; the loop continues with step index ``step``."""
    tensors: dict[str, Tensor]
    """Every tensor of the stack by its checkpoint name (``weight<i>``, ``bias<i>``, the encoding's names)."""
    adam: dict[str, Tensor]
    """Adam state of each optimised tensor: ``<name>.exp_avg``, ``<name>.exp_avg_sq``, ``<name>.step``."""
    alive: Tensor
    """(B,) bool: members whose loss has stayed finite."""
    steps: list[int]
    """Step numbers of the curve so far."""
    curve: Tensor
    """(T, B) training PSNR recorded so far (float64)."""
    seconds: float
    """Training wall time so far."""


ADAM_KEYS = ("exp_avg", "exp_avg_sq", "step")
"""Per-tensor Adam state a :class:`LoopState` keeps (amsgrad is never used)."""


def stack_tensors(stack: Stack) -> dict[str, Tensor]:
    """The live tensors of a stack by checkpoint name: ``weight<i>``, ``bias<i>`` and the encoding's names."""
    out = {f"weight{i}": w for i, w in enumerate(stack.weights)}
    out.update({f"bias{i}": b for i, b in enumerate(stack.biases)})
    out.update(stack.encoding)
    return out


def _cpu_copy(t: Tensor) -> Tensor:
    return torch.as_tensor(t).detach().to("cpu", copy=True)


def _snapshot(stack: Stack, opt: torch.optim.Optimizer, step: int, alive: Tensor, steps: list[int], curve: list[Tensor],
              seconds: float) -> LoopState:
    live = stack_tensors(stack)
    name_of = {id(t): n for n, t in live.items()}
    adam = {}
    for p in opt.param_groups[0]["params"]:
        st = opt.state.get(p, {})
        for k in ADAM_KEYS:
            if k in st:
                adam[f"{name_of[id(p)]}.{k}"] = _cpu_copy(st[k])
    return LoopState(step, {n: _cpu_copy(t) for n, t in live.items()}, adam, _cpu_copy(alive), list(steps),
                     torch.stack(curve).clone(), seconds)


def _optimised_names(stack: Stack, start: int) -> list[str]:
    """Names of the tensors :func:`inrlens.fit.make_optimizer` optimises, in its order."""
    live = stack_tensors(stack)
    enc = [n for n in stack.encoding_names if isinstance(live[n], torch.nn.Parameter)] if start == 0 else []
    return enc + [f"{kind}{ell}" for ell in range(start, stack.cfg.depth + 1) for kind in ("weight", "bias")]


def state_mismatch(stack: Stack, state: LoopState, train_cfg: TrainConfig, start: int = 0) -> str | None:
    """Why ``state`` cannot continue a loop of :func:`inrlens.fit.train` on ``stack`` (tensor names or shapes, member count,
    steps outside 1..steps−1, an incomplete Adam state), or None when it can."""
    live = stack_tensors(stack)
    if set(state.tensors) != set(live):
        return f"its tensors ({', '.join(sorted(state.tensors))}) are not the stack's ({', '.join(sorted(live))})"
    for n, t in live.items():
        if tuple(state.tensors[n].shape) != tuple(t.shape) or state.tensors[n].dtype != t.dtype:
            return f"tensor {n} is {tuple(state.tensors[n].shape)} {state.tensors[n].dtype}, the stack's {tuple(t.shape)} {t.dtype}"
    if not 1 <= state.step < train_cfg.steps:
        return f"it is at step {state.step}, outside 1..{train_cfg.steps - 1}"
    B = stack.members
    T = len(state.steps)
    if state.alive.dtype != torch.bool or tuple(state.alive.shape) != (B,) or tuple(state.curve.shape) != (T, B) or T < 1:
        return f"its curve or member mask does not fit {B} members"
    if any(not 0 <= s < state.step for s in state.steps) or list(state.steps) != sorted(set(state.steps)):
        return "its curve steps are not increasing steps before its step"
    names = _optimised_names(stack, start)
    extra = {k.rsplit(".", 1)[0] for k in state.adam} - set(names)
    if extra:
        return f"it has Adam state for tensors that are not trained: {', '.join(sorted(extra))}"
    for n in names:
        have = [k for k in ADAM_KEYS if f"{n}.{k}" in state.adam]
        if have and len(have) != len(ADAM_KEYS):
            return f"its Adam state of {n} is incomplete"
        if have and (tuple(state.adam[f"{n}.exp_avg"].shape) != tuple(live[n].shape)
                     or tuple(state.adam[f"{n}.exp_avg_sq"].shape) != tuple(live[n].shape) or state.adam[f"{n}.step"].ndim != 0):
            return f"its Adam state of {n} does not fit the tensor"
    return None


def _restore(stack: Stack, opt: torch.optim.Optimizer, state: LoopState) -> None:
    """Copy a checked state's tensors into the stack and its Adam state into ``opt`` (copies: never aliased)."""
    live = stack_tensors(stack)
    with torch.no_grad():
        for n, t in live.items():
            t.copy_(state.tensors[n])
    name_of = {id(t): n for n, t in live.items()}
    sd = opt.state_dict()
    per_param = {}
    for i, p in enumerate(opt.param_groups[0]["params"]):
        n = name_of[id(p)]
        if f"{n}.step" in state.adam:
            per_param[i] = {k: state.adam[f"{n}.{k}"].clone() for k in ADAM_KEYS}
    opt.load_state_dict({"state": per_param, "param_groups": sd["param_groups"]})


__all__ = ["LoopState", "ADAM_KEYS", "stack_tensors", "state_mismatch"]
