"""Probes: what a trained INR's layers are. ``rank`` (stable ranks, predicted freeze depth), ``sae`` (TopK
sparse autoencoders per layer), ``atoms`` (atom maps, single-atom ablations), ``semantics`` (what atom maps correlate
with). A new probe is a module here (see docs/extending.md)."""
