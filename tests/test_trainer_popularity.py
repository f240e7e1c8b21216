"""Decayed counts and the popularity sampler: stated probabilities are the real ones."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.core.popularity import DecayedCounts, PopularitySampler, SumTree


def test_decay_halves_per_half_life_and_share_ignores_time():
    c = DecayedCounts(half_life_ms=1000)
    c.add(np.array([0, 1, 1]), np.array([0, 0, 0]))
    c.add(np.array([0]), np.array([2000]))
    assert c.at(np.array([0, 1]), now_ms=2000) == pytest.approx([1.25, 0.5])
    assert c.share(np.array([0, 1])) == pytest.approx([1.25 / 1.75, 0.5 / 1.75])


def test_rebase_keeps_values_and_sampler_follows():
    c = DecayedCounts(half_life_ms=1)
    s = PopularitySampler(c, alpha=1.0, epsilon=0.0)
    for t in range(0, 2000, 100):  # exponent passes the rebase threshold several times
        f = c.add(np.array([t // 100 % 3]), np.array([t]))
        s.rescaled(f)
        s.update(np.array([t // 100 % 3]))
    tree_total = s.tree.total
    assert tree_total == pytest.approx(c.stored[:3].sum(), rel=1e-9)
    assert np.isfinite(c.stored[:3]).all()


def test_sampler_frequencies_match_stated_probabilities():
    """Chi-square goodness of fit of 200k draws against prob(); fixed seed."""
    rng = np.random.default_rng(0)
    n = 50
    c = DecayedCounts(0)
    rows = rng.zipf(1.5, size=5000) % n
    c.add(rows, np.zeros(len(rows)))
    c.ensure(n)
    s = PopularitySampler(c, alpha=0.75, epsilon=0.1, seed=3)
    s.update(np.arange(n))
    draws, q = s.sample(200_000)
    p = s.prob(np.arange(n))
    assert p.sum() == pytest.approx(1.0)
    assert q == pytest.approx(p[draws])
    observed = np.bincount(draws, minlength=n)
    expected = p * len(draws)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # 49 degrees of freedom: the 99.9% quantile is ~85.4
    assert chi2 < 85.4


def test_sum_tree_updates_and_draws_only_weighted_leaves():
    t = SumTree(8)
    t.rebuild(np.array([0, 1, 0, 3.0]))
    t.set(np.array([2]), np.array([4.0]))
    assert t.total == pytest.approx(8.0)
    draws = t.draw(10_000, np.random.default_rng(1))
    assert set(np.unique(draws)) == {1, 2, 3}
    t.ensure(100)
    assert t.total == pytest.approx(8.0)
