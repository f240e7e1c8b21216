"""Comparison models for the benchmarks (not the product): popularity, item-kNN, WALS-style MF,
river MF."""

from bench.baselines.als import WALS
from bench.baselines.knn import ItemKNN
from bench.baselines.popular import DecayedPopular, MostPopular
from bench.baselines.river_mf import RiverMF

__all__ = ["WALS", "DecayedPopular", "ItemKNN", "MostPopular", "RiverMF"]
