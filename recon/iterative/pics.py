"""pics-style regularised SENSE reconstruction (BART ``pics`` analogue) on NumPy or CuPy.

Solves ``min_x 1/2 ||M F S x - y||^2 + sum_i lam_i R_i(x)`` with ``R_i`` among
L1-wavelet, total variation and locally low rank (see :mod:`recon.iterative.regularizers`):

- one L1-wavelet or LLR term: FISTA, with a random cycle spin / block shift per iteration;
- TV, or any combination: primal-dual (Chambolle-Pock) with fixed transforms;
- no term: CG on the normal equations (CG-SENSE).

The data are scaled as BART does (:func:`recon.iterative.scaling.estimate_scale`) before the
solve and the image scaled back, so the same ``lam`` works across datasets. All iterations run
on uncentred arrays (:func:`recon.iterative.operators.to_uncentered`), saving the FFT shifts,
and when the mask does not vary along the readout the readout FFT is done once on the data
instead of in every iteration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recon.backend import array_module, ifftc
from recon.errors import ConfigError
from recon.iterative.operators import SenseOp, to_centered, to_uncentered
from recon.iterative.regularizers import LocallyLowRank, TotalVariation, WaveletL1
from recon.iterative.scaling import estimate_scale
from recon.iterative.solvers import DualTerm, conjugate_gradient, fista, pdhg

REGULARIZERS = ("l1-wavelet", "tv", "llr")
SOLVERS = ("auto", "fista", "pdhg", "cg")


@dataclass
class Term:
    """One regularisation term: ``name`` in :data:`REGULARIZERS` and its weight ``lam``."""

    name: str
    lam: float


def parse_terms(spec: str | Sequence[Term]) -> list[Term]:
    """``"l1-wavelet:0.005,tv:0.001"`` -> terms (a bare name takes weight 0.005)."""
    if not isinstance(spec, str):
        return list(spec)
    terms = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = part.partition(":")
        name = name.strip().lower()
        if name not in REGULARIZERS:
            raise ConfigError(f"regularizer {name!r}: use one of {', '.join(REGULARIZERS)}")
        try:
            lam = float(value) if value else 0.005
        except ValueError:
            raise ConfigError(f"regularizer {part!r}: weight {value!r} is not a number") from None
        if lam < 0:
            raise ConfigError(f"regularizer {part!r}: weight must be >= 0")
        terms.append(Term(name, lam))
    return terms


def _lipschitz_bound(maps: Any, ndim: int) -> float:
    """Upper bound of ``||M F S||^2``: the largest per-pixel ``sum_m,c |S_mc|^2``."""
    xp = array_module(maps)
    energy = xp.abs(maps) ** 2
    while energy.ndim > ndim:
        energy = energy.sum(axis=0)
    return float(energy.max())


def _moreau_term(prox, shape_forward) -> DualTerm:
    """An identity-operator dual term from a prox via Moreau: ``v - s prox_{g/s}(v / s)``."""

    def prox_conj(v: Any, sigma: float) -> Any:
        return v - sigma * prox(v / sigma, 1.0 / sigma)

    return DualTerm(shape_forward, shape_forward, prox_conj, 1.0)


def pics(
    kspace: Any,
    maps: Any,
    *,
    mask: Any = None,
    regularizers: str | Sequence[Term] = "l1-wavelet:0.005",
    iterations: int = 50,
    solver: str = "auto",
    ndim: int = 2,
    scale: bool = True,
    wave: str = "db4",
    llr_block: int = 8,
    seed: int | None = 0,
    l2: float = 0.0,
) -> Any:
    """Regularised SENSE reconstruction of Cartesian k-space.

    Parameters
    ----------
    kspace : array, complex, shape ``(*batch, ncoils, *spatial)``
        Zero-filled, centred k-space (e.g. ``(ncoils, ny, nx)`` or ``(nt, ncoils, ny, nx)``).
    maps : array, complex, shape ``(ncoils, *spatial)`` or ``(nmaps, ncoils, *spatial)``
        Coil sensitivities, normalised so that ``sum |S|^2 <= 1`` (ESPIRiT maps are).
    mask : array, shape ``(*batch, *spatial)``, optional
        Sampling pattern; default the non-zero positions of the first coil.
    regularizers : str or sequence of Term
        ``"l1-wavelet:0.005"``, ``"tv:0.002"``, ``"llr:0.01"`` or combinations separated by
        commas; ``""`` for none (CG-SENSE). LLR needs a batch axis.
    iterations : int
        Number of iterations of the chosen solver.
    solver : str
        ``"auto"`` (FISTA for one wavelet/LLR term, PDHG otherwise, CG without terms),
        ``"fista"``, ``"pdhg"`` or ``"cg"``.
    ndim : int
        Number of spatial axes (2 or 3).
    scale : bool
        Apply BART-like data scaling (and undo it on the output).
    wave : str
        Daubechies wavelet (``"db4"``).
    llr_block : int
        LLR block edge in pixels.
    seed : int or None
        Seed of the random cycle spins / block shifts.
    l2 : float
        Tikhonov weight ``l2 ||x||^2 / 2`` (CG solver only), on the scaled data.

    Returns
    -------
    array, complex64, shape ``(*batch, nmaps, *spatial)``
        The image, one per set of maps (``nmaps = 1`` for a single map).
    """
    xp = array_module(kspace)
    if solver not in SOLVERS:
        raise ConfigError(f"solver {solver!r}: use one of {', '.join(SOLVERS)}")
    terms = parse_terms(regularizers)
    if maps.ndim == ndim + 1:
        maps = maps[None]
    if mask is None:
        mask = xp.abs(kspace[(Ellipsis, 0, *([slice(None)] * ndim))]) > 0
    factor = estimate_scale(kspace, ndim) if scale else 1.0
    mask = xp.asarray(mask)
    # A mask constant along the readout: the readout FFT commutes with it, so apply it to
    # the data once (hybrid space) and keep it out of the iterations.
    hybrid = ndim > 1 and bool(xp.all(mask == mask[..., :1]))
    data = kspace.astype(xp.complex64) / factor
    if hybrid:
        data = ifftc(data, axes=-1)
    y = to_uncentered(data, ndim)
    op = SenseOp(
        to_uncentered(maps.astype(xp.complex64), ndim),
        to_uncentered(mask, ndim),
        ndim=ndim,
        centered=False,
        fourier_axes=ndim - 1 if hybrid else ndim,
    )
    if any(t.name == "llr" for t in terms) and not op.batch:
        raise ConfigError("regularizer llr needs a batch axis (time or contrast) in the data")
    lip = _lipschitz_bound(op.maps, ndim)
    adj_y = op.adjoint(y)
    shape = op.ishape

    def make(term: Term, spin: bool):
        s = seed if spin else None
        if term.name == "l1-wavelet":
            return WaveletL1(shape, ndim, term.lam, wave=wave, seed=s)
        if term.name == "tv":
            return TotalVariation(shape, ndim, term.lam)
        return LocallyLowRank(shape, ndim, term.lam, block=llr_block, seed=s)

    if solver == "auto":
        if not terms:
            solver = "cg"
        elif len(terms) == 1 and terms[0].name != "tv":
            solver = "fista"
        else:
            solver = "pdhg"
    if l2 and solver != "cg":
        raise ConfigError("a Tikhonov (l2) weight needs the cg solver and no other regularizer")
    if solver == "cg":
        if terms:
            raise ConfigError("solver cg takes no regularizer (use fista or pdhg)")
        x = conjugate_gradient(op.normal, adj_y, iterations=iterations, lam=l2)
    elif solver == "fista":
        if len(terms) != 1 or terms[0].name == "tv":
            raise ConfigError("solver fista needs exactly one l1-wavelet or llr term")
        reg = make(terms[0], spin=True)
        x = fista(op.normal, adj_y, reg.prox, 1.0 / lip, iterations=iterations)
    else:
        duals = []
        for term in terms:
            reg = make(term, spin=False)
            if isinstance(reg, TotalVariation):
                duals.append(reg.dual_term())
            else:
                duals.append(_moreau_term(reg.prox, lambda v: v))
        x = pdhg(op.forward, op.adjoint, y, xp.zeros_like(adj_y), duals, lip, iterations=iterations)
    return to_centered(x, ndim) * factor
