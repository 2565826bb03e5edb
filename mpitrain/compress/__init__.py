"""Compressors with real wire formats (Beznosikov et al. 2020, docs/papers.md s.2).

``make_compressor(name, d, **params)`` builds one from the registry ``COMPRESSORS``
(name -> factory(d, **params)). Every compressor has ``encode(x, seed=None) -> uint8
payload`` (the bytes that travel), ``decode(payload) -> x_hat``, the class flags
``unbiased`` / ``summable`` / ``random``, the constant ``omega`` (U(omega)) or ``delta``
(B3(delta), delta >= 1, E||C(x) - x||^2 <= (1 - 1/delta)||x||^2), and
``payload_bits()`` / ``payload_nbytes()``.
"""
from mpitrain.compress.base import Compressor
from mpitrain.compress.biased_rounding import BiasedRounding
from mpitrain.compress.composition import Composition
from mpitrain.compress.error_feedback import ErrorFeedback
from mpitrain.compress.identity import Identity
from mpitrain.compress.natural_compression import NaturalCompression
from mpitrain.compress.natural_dithering import NaturalDithering
from mpitrain.compress.rand_k import RandK
from mpitrain.compress.scaled_sign import ScaledSign
from mpitrain.compress.standard_dithering import StandardDithering
from mpitrain.compress.ternary import Ternary
from mpitrain.compress.top_k import TopK


def rand_k_unscaled(d, **params):
    """Rand-k without the d/k scale: B3(d/k)."""
    return RandK(d, scaled=False, **params)


def top_k_natural_dithering(d, k=None, ratio=None, levels=2, p=2.0, dtype="float32"):
    """Top-k then natural dithering of the k values, / (1 + omega): the paper's new
    compressor, B3((1 + omega) d / k)."""
    return Composition(TopK(d, k=k, ratio=ratio, dtype=dtype),
                       lambda n: NaturalDithering(n, levels, p=p, dtype=dtype))


def top_k_natural_compression(d, k=None, ratio=None, dtype="float32"):
    """Top-k then natural compression of the k values, / (9/8): B3((9/8) d / k)."""
    return Composition(TopK(d, k=k, ratio=ratio, dtype=dtype),
                       lambda n: NaturalCompression(n, dtype=dtype))


def composition(d, biased, unbiased, biased_params=None, unbiased_params=None,
                dtype="float32"):
    """Any registered biased compressor then any unbiased one (names + params dicts)."""
    b = make_compressor(biased, d, dtype=dtype, **(biased_params or {}))
    return Composition(b, lambda n: make_compressor(unbiased, n, dtype=dtype,
                                                    **(unbiased_params or {})))


COMPRESSORS = {
    "identity": Identity,
    "top_k": TopK,
    "rand_k": RandK,
    "rand_k_unscaled": rand_k_unscaled,
    "natural_compression": NaturalCompression,
    "biased_rounding": BiasedRounding,
    "standard_dithering": StandardDithering,
    "qsgd": StandardDithering,
    "natural_dithering": NaturalDithering,
    "scaled_sign": ScaledSign,
    "ternary": Ternary,
    "top_k_natural_dithering": top_k_natural_dithering,
    "top_k_natural_compression": top_k_natural_compression,
    "composition": composition,
}


def make_compressor(name, d, **params):
    """The compressor ``name`` for dimension d; ValueError for an unknown name (listing
    the known ones) or a bad parameter (naming it)."""
    try:
        factory = COMPRESSORS[name]
    except KeyError:
        raise ValueError(
            f"unknown compressor {name!r}; known: {', '.join(sorted(COMPRESSORS))}"
        ) from None
    return factory(d, **params)


__all__ = [
    "COMPRESSORS", "make_compressor", "Compressor", "Identity", "TopK", "RandK",
    "NaturalCompression", "BiasedRounding", "StandardDithering", "NaturalDithering",
    "ScaledSign", "Ternary", "Composition", "ErrorFeedback",
]
