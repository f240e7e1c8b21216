"""Comparison models for the benchmarks (not the product): popularity, WALS-style MF, river MF."""

from bench.baselines.als import WALS
from bench.baselines.popular import DecayedPopular, MostPopular
from bench.baselines.river_mf import RiverMF

__all__ = ["WALS", "DecayedPopular", "MostPopular", "RiverMF"]
