"""The :class:`Backbone` base class: everything inrlens needs to know about one INR architecture.

Every INR in inrlens follows Eq. 1 of the paper,

    h₀ = γ(x);   h_ℓ = φ_ℓ(W_ℓ h_{ℓ−1} + b_ℓ) for ℓ = 0..L−1;   f(x) = W_out h_{L−1} + b_out,

with L hidden layers of one width and a linear head (index L). A backbone fills in the parts that differ
between architectures:

* the **input encoding** γ: its output size d₀ (:meth:`Backbone.encoding_dim`), the tensors it needs
  (:meth:`Backbone.draw_encoding`, e.g. FFMLP's Fourier matrix ``fourier``; none for SIREN) and how it maps
  coordinates (:meth:`Backbone.embed`);
* the **initialisation** of every linear layer, head included (:meth:`Backbone.init_layer`);
* the **hidden activation** φ_ℓ (:meth:`Backbone.hidden`);
* its **memory footprint** per stack member, for the chunk sizes of :mod:`inrlens.memory`
  (:meth:`Backbone.encoding_numel`, :meth:`Backbone.saved_per_hidden`, :meth:`Backbone.embed_saved`);
* its single-signal learning rate :attr:`Backbone.default_lr` (cohort and transfer fits use the protocol's
  rates for every backbone, see :func:`inrlens.rules.lr_for`).

Stacks, the training loop, checkpoints, stable ranks and SAEs only talk to this interface, so registering a
new backbone (:func:`inrlens.backbones.register_backbone`) makes it usable everywhere; docs/extending.md
walks through an example.

Draw order (reproducibility). Member i of every stack draws its whole initialisation from one CPU generator
seeded with its seed, in this order: the encoding tensors (:meth:`~Backbone.draw_encoding`, first), then
W₀, b₀, W₁, b₁, …, W_L, b_L (:meth:`~Backbone.init_layer` once per layer). So member i of any stack equals
the INR built alone with that seed, and a re-initialised layer ℓ of a transfer equals layer ℓ of a random
init with the same seed. Keep this order when you write a backbone: draw nothing anywhere else.

Trainable encodings. An encoding whose tensors are learned (a hash grid, a learned frequency matrix, …) sets
:attr:`Backbone.encoding_trainable`. Its tensors then become parameters of the stack and **count as part of
layer 0**:

* single fits and cohorts (first trainable layer 0) optimise them with the layers;
* a freeze-k transfer (k ≥ 0) freezes them with layers 0..k: they are the cohort's, shared by every member,
  never updated, and part of the frozen prefix that is computed once before the loop;
* the no-freeze transfer starts every member from a copy of the cohort's encoding and trains it;
* with layer 0 trainable the training loop never caches γ(x): it recomputes the encoding inside every step,
  so that its gradient flows.

A fixed encoding (FFMLP's Fourier matrix) is a buffer: drawn per member for single fits, the cohort's for a
transfer, never trained.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Encoding = dict[str, Tensor]
"""Named encoding tensors of a stack; each has a leading member axis of size 1 (shared) or B."""


class Backbone:
    """One INR architecture. Subclass it, set the class attributes and override what differs from the defaults.

    The defaults describe a plain MLP on raw coordinates: no encoding tensors, γ(x) = x (d₀ = 2), every layer
    initialised like PyTorch's ``nn.Linear`` (W, b ~ U(±1/√fan_in)). :meth:`hidden` has no default.

    Methods receive the :class:`~inrlens.config.NetConfig` ``cfg`` of the stack (width, depth and the
    backbone-specific fields such as ω₀ or the Fourier size) and must not keep state of their own: one object
    serves every stack of its architecture.
    """

    name: str = ""
    """Registry name, used in configs, the CLI, result rows and folder names (lower case, no spaces)."""
    default_lr: float = 1e-3
    """Adam learning rate of a single-signal fit from random init (and of the random-init baseline)."""
    encoding_trainable: bool = False
    """Whether the encoding tensors are learned (see the module docstring: they count as part of layer 0)."""
    description: str = ""
    """One line for listings and help text."""

    # ------------------------------------------------------------------ input encoding γ
    def encoding_dim(self, cfg) -> int:
        """d₀, the size of γ(x) (the fan-in of layer 0). Default: 2 (raw coordinates)."""
        return 2

    def draw_encoding(self, cfg, generator: torch.Generator) -> Encoding:
        """The encoding tensors of one member, drawn from its CPU ``generator`` (before any layer). Names must be
        Python identifiers other than ``weight<i>`` / ``bias<i>``; checkpoints store each tensor under its name.
        Default: none."""
        return {}

    def embed(self, cfg, enc: Encoding, coords: Tensor) -> Tensor:
        """γ(x): coords (P, 2) in [-1, 1] → (B_f, P, d₀), where B_f is the member count of the tensors in ``enc``
        (1 when ``enc`` is empty or shared). Default: the coordinates themselves, (1, P, 2)."""
        return coords.unsqueeze(0)

    def encoding_names(self, cfg) -> tuple[str, ...]:
        """Names of the tensors :meth:`draw_encoding` returns (what a checkpoint must hold)."""
        return tuple(self.draw_encoding(cfg, torch.Generator().manual_seed(0)))

    # ------------------------------------------------------------------ layers
    def init_layer(self, cfg, ell: int, fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Initial (W of shape (fan_in, fan_out), b of shape (1, fan_out)) of layer ℓ = 0..L (ℓ = L is the head),
        drawn from ``generator`` (W first, then b). Default: ``nn.Linear``'s U(±1/√fan_in) for both."""
        a = 1.0 / math.sqrt(fan_in)
        w = torch.empty(fan_in, fan_out).uniform_(-a, a, generator=generator)
        b = torch.empty(1, fan_out).uniform_(-a, a, generator=generator)
        return w, b

    def hidden(self, cfg, ell: int, h: Tensor, w: Tensor, b: Tensor) -> Tensor:
        """Hidden layer ℓ = 0..L−1: φ_ℓ(h W + b) for h (B_h, P, in), w (B_w, in, out), b (B_w, 1, out), member
        counts broadcasting as in :func:`inrlens.nets.linear` (use it for the affine part)."""
        raise NotImplementedError(f"backbone {self.name!r} does not define hidden()")

    # ------------------------------------------------------------------ memory (see inrlens.memory)
    def encoding_numel(self, cfg) -> int:
        """Float32 elements of one member's encoding tensors."""
        return int(sum(t.numel() for t in self.draw_encoding(cfg, torch.Generator().manual_seed(0)).values()))

    def saved_per_hidden(self, cfg) -> int:
        """(P × width) tensors kept alive per trainable hidden layer during backward: the linear output, what the
        activation saves, and the post-activation the next matmul saves. Default: 3."""
        return 3

    def embed_saved(self, cfg) -> int:
        """Elements per pixel that autograd keeps for the backward of :meth:`embed` when the encoding trains
        (ignored for a fixed encoding, whose output is cached). Default: 2·d₀."""
        return 2 * self.encoding_dim(cfg)

    def __repr__(self) -> str:
        return f"<backbone {self.name!r}>"


__all__ = ["Backbone", "Encoding"]
