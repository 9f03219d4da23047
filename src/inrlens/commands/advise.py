"""``inrlens advise MODEL``: where to freeze any trained coordinate MLP (docs/advise.md).

Thin command: read the model with :func:`inrlens.advise.load_model`, profile it with :func:`inrlens.advise.advise`,
print the table and the recommendation; with ``--verify`` run :func:`inrlens.advise.verify` on the images;
with ``--out`` write advise.json and advise.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import tyro

from ..config import DataConfig

Positional = tyro.conf.Positional


@dataclass(frozen=True)
class Advise:
    """Where to freeze a trained coordinate MLP: its stable-rank profile and the freeze depth k* = argmax sr(W), optionally
    checked by a short freeze sweep on images (docs/advise.md)."""

    model: Positional[Path]
    """inrlens checkpoint folder, PyTorch state_dict (.pt/.pth) or .safetensors file of Linear layers, or TorchScript file."""
    activation: str | None = None
    """'sine' (SIREN), 'relu' (FFMLP, needs --fourier) or a registered backbone; default: the checkpoint's (inrlens folders)."""
    omega0: float | None = None
    """SIREN ω₀ of the hidden layers of a foreign sine model (default 30)."""
    omega0_first: float | None = None
    """SIREN ω₀ of the first layer of a foreign sine model (default 30)."""
    fourier: str | None = None
    """Key of the Fourier-feature frequency matrix B of a foreign FFMLP: (m, 2) as in sin(2π x Bᵀ), or (2, m); features [sin, cos]."""
    head_prefix: str | None = None
    """Key prefix of the head that ends the stack (e.g. decoderINRs.1); default: the first head found, else the last layer."""
    member: int = 0
    """For an inrlens checkpoint of several independent INRs (a single-fit folder): which member to profile."""
    net_option: tuple[str, ...] = ()
    """Further architecture fields of a foreign model's backbone as FIELD=VALUE (e.g. gauss_scale=10)."""
    grid: tuple[int, int] | None = None
    """H W of the grid for the activation ranks sr(H); default: the checkpoint's recorded grid, else 64 64."""
    init_seed: int | None = None
    """Seed the encoder was drawn from (inrlens's init), for sr(W⁰) and Δsr; default: the seed the checkpoint records."""
    init_seeds: int = 5
    """Draws of the backbone's init averaged for sr(W⁰) when the model records no init seed."""
    verify: tuple[str, ...] = ()
    """Images (files, folders, sample:NAME, noise:KIND): check k* by a freeze sweep (no-freeze, every k, random init)."""
    limit: int | None = None
    """--verify: use only the first N images."""
    steps: int = 200
    """--verify: Adam steps of every fit."""
    seeds: tuple[int, ...] = (0, 1)
    """--verify: re-initialisation seeds of every fit."""
    lr: float | None = None
    """--verify: learning rate of the freeze and no-freeze fits; None = the protocol's transfer rate (1e-4)."""
    random_lr: float | None = None
    """--verify: learning rate of the random-init baseline; None = the backbone's single-signal rate."""
    device: str = "auto"
    """--verify: 'auto', 'cpu', 'cuda' or 'cuda:N'."""
    data: DataConfig = DataConfig()
    out: Path | None = None
    """Folder to write advise.json and advise.md into (optional)."""

    def run(self) -> None:
        from .. import advise as adv
        from ..data import resolve
        from .core import print_table

        adv.check_out(self.out)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if self.grid is not None and min(self.grid) < 1:
            raise ValueError(f"--grid: H and W must be >= 1, got {self.grid[0]} {self.grid[1]}")
        if self.init_seeds < 1:
            raise ValueError(f"--init-seeds must be >= 1, got {self.init_seeds}")
        if self.verify:
            from ..rules import check_seeds

            check_seeds(self.seeds, "--seeds")
        model = adv.load_model(self.model, self.activation, omega0=self.omega0, omega0_first=self.omega0_first,
                               fourier=self.fourier, head_prefix=self.head_prefix, member=self.member, options=self.net_option)
        sigs = resolve(self.verify, self.data)[: self.limit] if self.verify else None  # bad images fail before any fit
        advice = adv.advise(model, self.grid, self.init_seeds, self.init_seed)
        cfg = model.stack.cfg
        print_table(adv.profile_rows(advice), ["layer", "key", "in", "out", "role", "sr_w", "sr_h", "sr_h_centred", "sr_w_init",
                                               "delta_sr", "argmax"],
                    f"{model.path} ({model.format}, {cfg.backbone}, {cfg.depth} hidden layers of width {cfg.width}); "
                    f"sr(H) on the {advice.grid[0]}x{advice.grid[1]} grid")
        for note in model.notes:
            print(f"note: {note}")
        for line in adv.recommendation_lines(advice):
            print(line)
        v = None
        if sigs is not None:
            p = advice.profile
            v = adv.verify(model.stack, sigs, advice.k, seeds=self.seeds, steps=self.steps, lr=self.lr,
                           random_lr=self.random_lr, device=self.device, log=print,
                           predictors={"argmax sr(H)": p.k_h, "argmax sr(H) centred": p.k_h_centred, "argmax Δsr": p.k_delta})
            rows = [{"depth": d["depth"], "n": d["n"], "psnr": d["psnr_mean"], "psnr_std": d["psnr_std"],
                     "best_set": "*" if d["depth"] in v["best_set"] else ""} for d in v["depths"]]
            print_table(rows, ["depth", "n", "psnr", "psnr_std", "best_set"],
                        f"verification: {len(sigs)} image(s) × {len(v['seeds'])} seed(s), {self.steps} steps "
                        "(psnr_std: sample std over images × seeds)")
            for line in adv.verification_lines(v):
                print(line)
            if any(d["n"] == 0 or (isinstance(d["psnr_mean"], float) and math.isnan(d["psnr_mean"])) for d in v["depths"]):
                print("note: some depths have no finite result (every fit diverged)")
        if self.out is not None:
            for path in adv.write_report(self.out, advice, v):
                print(path)
