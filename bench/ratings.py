"""A ratings stream in the regime real data puts us in (DESIGN.md, "Real data is harder").

What makes it hard, each a knob of `Shape`:

- a long tail of base appeal (lognormal), times a life curve after release: attention halves
  every ~10 days (lognormal spread: days to months) down to a floor; a few items are
  evergreen. A third of the catalogue predates the stream; the rest is released over the span.
  What is on now moves fast: a strong, drifting popularity component.
- users arriving over the span with heavy-tailed activity (lognormal: median ~4 positives,
  three in four under 10, the busiest some hundreds), in sessions: a burst right after
  arrival (a sign-up flow, MovieLens-like) that rates from memory (∝ appeal among released
  items, no trend), then sparse returns weeks later that follow what is on now. Returns after
  the span are lost (so a stream has ~7% fewer ratings than asked for).
- taste that multiplies popularity, two ways. Latent factors (user and item vectors, a
  unit-variance dot product): each event draws `candidates` items by popularity and picks one
  ∝ exp(taste · x_u·y_i) (sampling-importance-resampling). And niches (small groups of items:
  a franchise, a sub-genre): a share of events draws its candidates within one of the user's
  niches, more in the sign-up burst than on returns. Niches are what item-kNN sees from a few
  items; the popularity-weighted draws are what decayed popularity sees.
- no repeats: a user rates an item at most once (an event whose candidates its user has all
  rated takes a tail candidate, drawn ∝ sqrt(appeal); very few are dropped).
- a rating 1–5 per event: mean + user bias + item quality + rating_taste · x_u·y_i + noise,
  rounded; positives are ratings ≥ `threshold` (~60%). The stream the models learn is the
  positives in time order, relabelled like every bench stream (ids by first appearance).

The defaults are calibrated (bench.realistic, several seeds at 1M ratings, 60k users, 20k
items) so that the default softmax model sits where a public ratings dataset put it: decayed
popularity ahead on warm users' recall@10, and for a cold user known by 3 items, item-kNN
well above popularity ≈ softmax.

>>> r = ratings(20_000, 1_000, 2_000, seed=0)
>>> bool(np.all(np.diff(r.stream.ts) >= 0)) and len(r.stream) == int((r.rating >= 4).sum())
True
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from bench.streams import DAY_MS, START_MS, Stream, _first_appearance

MINUTE = 1 / 1440  # in days
TOP = "top 1% items' share of positives"


@dataclass(frozen=True)
class Shape:
    """The knobs of `ratings`; times in days. Defaults: calibrated, see the module docstring."""

    days: float = 365.0  # span of the stream
    back_catalogue: float = 0.3  # share of items released before the stream starts
    back_days: float = 1000.0  # how far back the back catalogue's releases go
    appeal_sigma: float = 2.2  # lognormal spread of an item's base appeal: the long tail
    life_days: float = 10.0  # median half-life of attention after release
    life_sigma: float = 1.0  # lognormal spread of that half-life (days to months)
    floor: float = 0.02  # attention left once an item has faded (share of its peak)
    evergreen: float = 0.05  # share of items whose attention never fades
    activity_sigma: float = 1.5  # lognormal spread of events per user (heavy tail)
    max_user_share: float = 0.05  # no user rates more than this share of the catalogue
    burst: float = 0.6  # share of a user's events in the session right after arrival
    catch_up: float = 1.0  # share of burst events that rate from memory: ∝ appeal, no trend
    session: float = 5.0  # mean events per return session
    return_days: float = 60.0  # mean delay of a return session after arrival
    niche_size: float = 30.0  # mean items per niche (a franchise, a sub-genre)
    niche_events: float = 50.0  # a user follows about one niche per this many events (≥ 1)
    niche_share: float = 0.7  # share of burst events drawn from one of the user's niches
    niche_share_returns: float = 0.2  # ... and of return events (what's on now draws more)
    factors: int = 16  # latent taste dimensions
    taste: float = 1.0  # strength of taste in the choice: exp(taste · x·y)
    candidates: int = 32  # items drawn by popularity per event, one kept by taste
    tail_candidates: int = 8  # drawn ∝ sqrt(appeal), taken once the others are all rated
    rating_mean: float = 3.45
    user_bias: float = 0.4  # sd of a user's rating offset
    item_quality: float = 0.3  # sd of an item's rating offset
    rating_taste: float = 0.6  # how much taste moves the rating
    rating_noise: float = 0.8  # sd of the rating's noise
    threshold: int = 4  # ratings at or above are positives


@dataclass(frozen=True)
class Ratings:
    """Every rating, and the positives as the stream models learn.

    `users`/`items` of the ratings are stream ids (-1: never in a positive event)."""

    stream: Stream
    users: np.ndarray
    items: np.ndarray
    ts: np.ndarray
    rating: np.ndarray  # int8, 1..5
    shape: Shape

    def stats(self) -> dict[str, float]:
        """What the stream looks like, to set against real data."""
        st = self.stream
        per_user = np.bincount(st.users)
        per_item = np.sort(np.bincount(st.items))[::-1]
        top = max(1, len(per_item) // 100)
        return {
            "ratings": float(len(self.rating)),
            "positives": float(len(st)),
            "positive share": float(np.mean(self.rating >= self.shape.threshold)),
            "users": float(st.n_users),
            "items": float(st.n_items),
            "median positives per user": float(np.median(per_user)),
            "users with < 10 positives": float(np.mean(per_user < 10)),
            "max positives of a user": float(per_user.max()),
            TOP: float(per_item[:top].sum() / len(st)),
            "items with < 5 positives": float(np.mean(per_item < 5)),
        }

    def describe(self) -> str:
        s = self.stats()
        return (
            f"{s['ratings']:,.0f} ratings ({s['positive share']:.0%} positive) → "
            f"{s['positives']:,.0f} positives of {s['users']:,.0f} users on {s['items']:,.0f} "
            f"items; median {s['median positives per user']:.0f} positives per user "
            f"({s['users with < 10 positives']:.0%} under 10, max "
            f"{s['max positives of a user']:,.0f}); the top 1% of items hold "
            f"{s[TOP]:.0%} of positives"
        )


def ratings(events: int, users: int, items: int, seed: int = 0, shape: Shape = Shape()) -> Ratings:
    """About `events` ratings (fewer: returns after the span are lost) of `users` users on
    `items` items; see the module docstring."""
    s = shape
    rng = np.random.default_rng([seed, 15])
    # items: appeal × life curve; released before (back catalogue) or during the span
    appeal = rng.lognormal(0.0, s.appeal_sigma, items)
    back = rng.random(items) < s.back_catalogue
    release = np.where(back, -rng.uniform(0, s.back_days, items), rng.uniform(0, s.days, items))
    life = s.life_days * rng.lognormal(0.0, s.life_sigma, items)
    floor = np.where(rng.random(items) < s.evergreen, 1.0, s.floor)
    # users: arrival, activity, bias, taste
    arrival = rng.uniform(0, s.days, users)
    n = _activity(rng.lognormal(0.0, s.activity_sigma, users), events, s.max_user_share * items)
    X = rng.normal(0, s.factors**-0.5, (users, s.factors)).astype(np.float32)
    Y = rng.normal(0, 1.0, (items, s.factors)).astype(np.float32)

    u, t, burst = _event_times(rng, arrival, n, s)
    memory = burst & (rng.random(len(u)) < s.catch_up)
    keep = t < s.days
    order = np.flatnonzero(keep)[np.argsort(t[keep], kind="stable")]
    u, t, burst, memory = u[order], t[order], burst[order], memory[order]

    niche = rng.integers(0, max(1, round(items / s.niche_size)), items)
    event_niche = _event_niches(rng, u, n, burst, niche, appeal, s)
    life_curve = (release, life, floor)
    cands = _candidates(rng, t, memory, event_niche, niche, appeal, life_curve, s)
    key = np.empty(cands.shape, np.float32)
    for lo in range(0, len(u), 65_536):
        hi = min(lo + 65_536, len(u))
        key[lo:hi] = np.einsum("ef,ecf->ec", X[u[lo:hi]], Y[cands[lo:hi]])
    key *= s.taste
    key[:, s.candidates :] -= 1e4  # a busy user digs into the tail only when it must
    key -= np.log(-np.log(rng.random(key.shape, np.float32) + np.float32(1e-12)))  # Gumbel
    u, t, i = _without_repeats(u, t, cands, key, items)

    taste = np.einsum("ef,ef->e", X[u], Y[i])
    r = (
        s.rating_mean
        + rng.normal(0, s.user_bias, users)[u]
        + rng.normal(0, s.item_quality, items)[i]
        + s.rating_taste * taste
        + rng.normal(0, s.rating_noise, len(u))
    )
    rating = np.clip(np.round(r), 1, 5).astype(np.int8)
    ts = START_MS + (t * DAY_MS).astype(np.int64)
    pos = rating >= s.threshold
    su, umap = _first_appearance(u[pos], users)
    si, imap = _first_appearance(i[pos], items)
    stream = Stream(
        "ratings",
        su,
        si,
        ts[pos],
        _by_new_id(np.argmax(X, 1), umap),
        _by_new_id(np.argmax(np.abs(Y), 1), imap),
    )
    return Ratings(stream, umap[u], imap[i], ts, rating, s)


def _activity(raw: np.ndarray, events: int, cap: float) -> np.ndarray:
    """Events per user ∝ `raw`, each in [1, cap], summing to about `events` (the mass the cap
    cuts from the busiest users goes to the others)."""
    cap = max(1.0, cap)
    scale = events / raw.sum()
    for _ in range(20):
        n = np.clip(np.round(raw * scale), 1, cap)
        if abs(n.sum() - events) <= 0.001 * events or n.min() == cap:
            break
        scale *= events / n.sum()
    return n.astype(np.int64)


def _by_new_id(values: np.ndarray, relabel: np.ndarray) -> np.ndarray:
    out = np.empty(int(relabel.max()) + 1, np.int64)
    out[relabel[relabel >= 0]] = values[relabel >= 0]
    return out


def _event_times(
    rng: np.random.Generator, arrival: np.ndarray, n: np.ndarray, s: Shape
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, day, in the burst?) of every event: a burst after arrival, then returns."""
    u = np.repeat(np.arange(len(n)), n)
    in_burst = rng.random(len(u)) < s.burst
    in_burst[np.r_[0, np.cumsum(n)[:-1]]] = True  # everyone's first event opens the burst
    t = np.empty(len(u))
    bu = u[in_burst]
    step = rng.exponential(2 * MINUTE, len(bu))
    # minutes apart, in order: a cumulative sum that restarts at each user's burst
    c = np.cumsum(step)
    starts = np.r_[0, np.flatnonzero(bu[1:] != bu[:-1]) + 1]
    c -= np.repeat(c[starts] - step[starts], np.diff(np.r_[starts, len(bu)]))
    t[in_burst] = arrival[bu] + c
    ru = u[~in_burst]
    if len(ru):
        n_ret = np.bincount(ru, minlength=len(n))
        sessions = np.maximum(1, np.round(n_ret / s.session)).astype(np.int64)
        first = np.r_[0, np.cumsum(sessions)[:-1]]
        start = np.repeat(arrival, sessions) + rng.exponential(s.return_days, sessions.sum())
        pick = first[ru] + (rng.random(len(ru)) * sessions[ru]).astype(np.int64)
        t[~in_burst] = start[pick] + rng.exponential(10 * MINUTE, len(ru))
    return u, t, in_burst


def _event_niches(
    rng: np.random.Generator,
    u: np.ndarray,
    n: np.ndarray,
    burst: np.ndarray,
    niche: np.ndarray,
    appeal: np.ndarray,
    s: Shape,
) -> np.ndarray:
    """Per event: the niche it draws from (one of its user's), or -1 for the whole catalogue.
    A user follows more niches the more it rates (else the busy ones would exhaust theirs);
    niches get followers ∝ their total appeal: big niches have more fans."""
    k = int(niche.max()) + 1
    follows = 1 + rng.poisson(n / s.niche_events)
    p = np.bincount(niche, weights=appeal, minlength=k)
    flat = rng.choice(k, int(follows.sum()), p=p / p.sum())
    first = np.r_[0, np.cumsum(follows)[:-1]]
    mine = flat[first[u] + (rng.random(len(u)) * follows[u]).astype(np.int64)]
    share = np.where(burst, s.niche_share, s.niche_share_returns)
    return np.where(rng.random(len(u)) < share, mine, -1)


def _candidates(
    rng: np.random.Generator,
    t: np.ndarray,
    memory: np.ndarray,
    event_niche: np.ndarray,
    niche: np.ndarray,
    appeal: np.ndarray,
    life_curve: tuple[np.ndarray, np.ndarray, np.ndarray],
    s: Shape,
) -> np.ndarray:
    """(events, candidates) items drawn ∝ appeal × attention on the event's day (× 1 for an
    event from memory: any released item), among all items or, for a niche event, among its
    niche's (all items if the niche has none out yet)."""
    release, life, floor = life_curve
    day = t.astype(np.int64)
    c = s.candidates
    out = np.empty((len(t), c + s.tail_candidates), np.int64)
    bounds = np.r_[0, np.flatnonzero(np.diff(day)) + 1, len(day)]
    by_niche = np.argsort(niche, kind="stable")
    sizes = np.bincount(niche)
    start = np.r_[0, np.cumsum(sizes)[:-1]]
    for lo, hi in pairwise(bounds):
        age = day[lo] + 0.5 - release
        trend = floor + (1 - floor) * 0.5 ** (np.maximum(age, 0) / life)
        for recall in (False, True):
            rows = lo + np.flatnonzero(memory[lo:hi] == recall)
            if len(rows):
                w = appeal * np.where(age >= 0, 1.0 if recall else trend, 0.0)
                out[rows, :c] = _draw(rng, w, event_niche[rows], niche, by_niche, start, c)
        if s.tail_candidates:
            w = np.sqrt(appeal) * (age >= 0)
            anywhere = np.full(hi - lo, -1)
            out[lo:hi, c:] = _draw(rng, w, anywhere, niche, by_niche, start, s.tail_candidates)
    return out


def _draw(
    rng: np.random.Generator,
    w: np.ndarray,
    want: np.ndarray,
    niche: np.ndarray,
    by_niche: np.ndarray,
    start: np.ndarray,
    c: int,
) -> np.ndarray:
    """`c` items ∝ `w` per event, within the event's niche (`want` ≥ 0) or among all."""
    out = np.empty((len(want), c), np.int64)
    total = np.bincount(niche, weights=w, minlength=len(start))
    want = np.where((want >= 0) & (total[np.maximum(want, 0)] > 0), want, -1)
    glob = np.flatnonzero(want < 0)
    cdf = np.cumsum(w)
    m = len(glob) * c
    draws = np.sort(rng.random(m)) * cdf[-1]  # sorted: the search runs twice as fast
    found = np.minimum(np.searchsorted(cdf, draws, side="right"), len(cdf) - 1)
    out[glob] = found[rng.permutation(m)].reshape(len(glob), c)
    loc = np.flatnonzero(want >= 0)
    if len(loc):
        b = np.repeat(want[loc], c)
        ws = w[by_niche]
        cs = np.cumsum(ws)
        x = cs[start[b]] - ws[start[b]] + rng.random(len(b)) * total[b]
        at = np.searchsorted(cs, x, side="right")
        end = np.r_[start[1:], len(cs)]
        out[loc] = by_niche[np.clip(at, start[b], end[b] - 1)].reshape(len(loc), c)
    return out


def _without_repeats(
    u: np.ndarray, t: np.ndarray, cands: np.ndarray, key: np.ndarray, items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each event (in time order) takes its best-keyed candidate that its user has not rated
    earlier; an event that runs out of candidates is dropped. Only users with a collision are
    revisited, so the rounds get cheap quickly."""
    pick = np.argmax(key, 1)
    item = cands[np.arange(len(u)), pick]
    todo = np.arange(len(u))  # events of users that may still collide
    for _ in range(cands.shape[1]):
        k = u[todo] * items + item[todo]
        _, first = np.unique(k, return_index=True)
        again = np.ones(len(todo), bool)
        again[first] = False
        again &= item[todo] >= 0
        if not again.any():
            break
        e = todo[again]
        key[e, pick[e]] = -np.inf
        pick[e] = np.argmax(key[e], 1)
        item[e] = np.where(np.isfinite(key[e, pick[e]]), cands[e, pick[e]], -1)
        todo = todo[np.isin(u[todo], u[e])]
    keep = item >= 0
    if len(todo):  # collisions left after every round (rare): drop the later events
        k = np.where(keep[todo], u[todo] * items + item[todo], -1 - todo)
        _, first = np.unique(k, return_index=True)
        dup = np.ones(len(todo), bool)
        dup[first] = False
        keep[todo[dup]] = False
    return u[keep], t[keep], item[keep]
