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

The code lives in four modules: :mod:`.model` (reading a model into a stack), :mod:`.profile` (the profile and
the recommendation), :mod:`.verification` (:func:`verify`) and :mod:`.report` (JSON, markdown, terminal lines).
Every name is re-exported here, so ``inrlens.advise.X`` reads as before.
"""

from __future__ import annotations

from .model import (
    ACTIVATIONS,
    Layer,
    Linear,
    Model,
    arrange,
    backbone_for,
    build_stack,
    check_chain,
    detect_heads,
    find_linears,
    load_inrlens,
    load_model,
    parse_options,
    read_tensors,
)
from .model import DEFAULT_OMEGA0 as DEFAULT_OMEGA0  # names outside __all__ that were importable from inrlens.advise
from .model import STATE_DICT_KEYS as STATE_DICT_KEYS
from .model import _check_wire_layout as _check_wire_layout
from .model import _fourier_matrix as _fourier_matrix
from .model import _is_torchscript as _is_torchscript
from .model import _one_line as _one_line
from .model import _read_json as _read_json
from .model import _under as _under
from .profile import DEFAULT_GRID as DEFAULT_GRID
from .profile import DEFAULT_INIT_SEEDS as DEFAULT_INIT_SEEDS
from .profile import Advice, advise, estimate_init_ranks, init_sentence, profile_rows
from .report import _f as _f
from .report import check_out, report_dict, to_markdown, write_report
from .report import recommendation_lines as recommendation_lines
from .report import verification_lines as verification_lines
from .verification import Log as Log
from .verification import _group_signals as _group_signals
from .verification import _verify_fits as _verify_fits
from .verification import _verify_values as _verify_values
from .verification import verify

__all__ = ["ACTIVATIONS", "Linear", "Layer", "Model", "Advice", "read_tensors", "find_linears", "detect_heads", "arrange",
           "check_chain", "backbone_for", "parse_options", "build_stack", "load_inrlens", "load_model",
           "estimate_init_ranks", "advise", "init_sentence", "profile_rows", "verify", "report_dict", "to_markdown",
           "check_out", "write_report"]
