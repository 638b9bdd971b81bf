"""P2P market clearing for one 15-minute interval: numpy only, vectorized over participants.

Inputs: ``quantity_kwh[i] > 0`` buys, ``< 0`` sells |q| (participant i's net energy over the
interval); ``limit_price_eur_per_kwh[i]`` (read by the double auction only); the grid tariffs
of the interval, retail λ_B (``buy_tariff``) and feed-in λ_S (``sell_tariff``), λ_S < λ_B.
Whatever a participant does not trade P2P it buys from the grid at λ_B or sells to it at λ_S.
``cost_eur[i] > 0`` is paid, ``< 0`` is earned.

Prices reported in ClearingResult mean the same under every mechanism:
- ``price_p2p_eur_per_kwh``: the one unit price at which every P2P kWh changes hands; P2P
  buyers pay it and P2P sellers receive it, so P2P money paid == P2P money received (the
  community is budget-balanced internally) and the total cost equals the grid money.
- ``price_buy_eur_per_kwh``: the buyers' average cost per kWh demanded, P2P share and grid
  remainder together, ``(p2p·T + λ_B·(D − T)) / D`` (T traded, D demand).  Under SDR this is
  exactly Liu et al.'s p_buy = p_sell·SDR + λ_B·(1 − SDR); under MMR Long et al.'s p_buy.
- ``price_sell_eur_per_kwh``: the sellers' average revenue per kWh offered,
  ``(p2p·T + λ_S·(G − T)) / G`` (G supply): Liu's p_sell, Long's p_sell.
  With nobody on one side the mechanism's own quote for that side is reported (see classes).

A new mechanism is one class with ``name`` and ``clear(q, price, lam_b, lam_s)`` (inputs
already validated by the module-level ``clear``), decorated with ``@register``.
"""

import math
from dataclasses import dataclass

import numpy as np

from simulators.validation import ConfigError, check_choice, check_finite, check_range


@dataclass
class ClearingResult:
    """Outcome of one clearing; energies [kWh] over the interval, money [EUR], prices [EUR/kWh]."""

    mechanism: str
    price_buy_eur_per_kwh: float
    """buyers' average cost per kWh demanded (P2P and grid together)"""
    price_sell_eur_per_kwh: float
    """sellers' average revenue per kWh offered (P2P and grid together)"""
    price_p2p_eur_per_kwh: float
    """unit price of every P2P kWh (NaN if the double auction matched nothing)"""
    supply_kwh: float
    """total offered, sum of |q| over sellers"""
    demand_kwh: float
    """total demanded, sum of q over buyers"""
    traded_kwh: float
    """P2P volume matched (== p2p_buy_kwh.sum() == p2p_sell_kwh.sum())"""
    p2p_buy_kwh: np.ndarray
    p2p_sell_kwh: np.ndarray
    grid_buy_kwh: np.ndarray
    grid_sell_kwh: np.ndarray
    cost_eur: np.ndarray
    """per participant, > 0 pays, < 0 earns"""


def settle(mechanism, q, lam_b, lam_s, p2p_buy, p2p_sell, traded, price_p2p, quote_buy, quote_sell):
    """Complete a clearing from its P2P allocation: grid remainders, money, average prices.

    ``quote_buy`` / ``quote_sell`` are reported when nobody demands / offers.
    """
    demand = np.maximum(q, 0.0)
    supply = np.maximum(-q, 0.0)
    d, g = float(demand.sum()), float(supply.sum())
    grid_buy = np.maximum(demand - p2p_buy, 0.0)
    grid_sell = np.maximum(supply - p2p_sell, 0.0)
    unit = price_p2p if traded > 0 else 0.0  # a NaN quote must not leak into zero-volume books
    cost = unit * (p2p_buy - p2p_sell) + lam_b * grid_buy - lam_s * grid_sell
    price_buy = (unit * traded + lam_b * max(d - traded, 0.0)) / d if d > 0 else quote_buy
    price_sell = (unit * traded + lam_s * max(g - traded, 0.0)) / g if g > 0 else quote_sell
    return ClearingResult(mechanism, float(price_buy), float(price_sell), float(price_p2p), g, d, float(traded),
                          p2p_buy, p2p_sell, grid_buy, grid_sell, cost)


# ---- registry --------------------------------------------------------------------------------
MARKETS = {}
"""mechanism name -> class"""


def register(cls):
    """Class decorator: add a mechanism to MARKETS under ``cls.name``."""
    MARKETS[cls.name] = cls
    return cls


def make_market(mechanism="sdr", **params):
    """An instance of the named mechanism; unknown names or parameters raise ConfigError."""
    cls = MARKETS[check_choice("mechanism", mechanism, MARKETS)]
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"market params: {sorted(params)} not accepted by mechanism {mechanism!r} ({exc})") from None


@register
class SdrMarket:
    """Supply-demand ratio pricing (Liu et al., IEEE Trans. Power Syst. 2017).

    SDR = G / D.  For SDR <= 1 every seller sells all P2P at
    p_sell = λ_B·λ_S / ((λ_B − λ_S)·SDR + λ_S) and every buyer gets the share SDR of its
    demand P2P at p_sell, the rest from the grid at λ_B: its average is Liu's
    p_buy = p_sell·SDR + λ_B·(1 − SDR).  For SDR > 1 p_buy = p_sell = λ_S: buyers buy all
    P2P, sellers sell the share 1/SDR P2P and the rest to the grid, all at λ_S.
    No demand (SDR undefined): sellers go to the grid, prices quoted at λ_S.
    """

    name = "sdr"

    def clear(self, q, price, lam_b, lam_s):
        demand = np.maximum(q, 0.0)
        supply = np.maximum(-q, 0.0)
        d, g = float(demand.sum()), float(supply.sum())
        if d <= 0:
            zero = np.zeros_like(q)
            return settle(self.name, q, lam_b, lam_s, zero, zero.copy(), 0.0, lam_s, lam_s, lam_s)
        sdr = g / d
        if sdr <= 1.0:
            den = (lam_b - lam_s) * sdr + lam_s
            p_sell = lam_b * lam_s / den if den > 0 else lam_b  # λ_S = 0 and SDR = 0: the limit λ_B
            return settle(self.name, q, lam_b, lam_s, demand * sdr, supply, g, p_sell, lam_b, p_sell)
        return settle(self.name, q, lam_b, lam_s, demand, supply / sdr, d, lam_s, lam_s, lam_s)


@register
class MidMarketRateMarket:
    """Mid-market rate (Long et al., Energy Procedia 2017): P2P at p_mmr = (λ_B + λ_S) / 2.

    The short side trades everything P2P; the long side shares the traded volume pro rata
    and settles its remainder with the grid, so (Long's formulas) for G < D
    p_buy = (p_mmr·G + λ_B·(D − G)) / D, p_sell = p_mmr; for G > D p_buy = p_mmr,
    p_sell = (p_mmr·D + λ_S·(G − D)) / G; for G = D both are p_mmr.
    """

    name = "mmr"

    def clear(self, q, price, lam_b, lam_s):
        demand = np.maximum(q, 0.0)
        supply = np.maximum(-q, 0.0)
        d, g = float(demand.sum()), float(supply.sum())
        p_mmr = 0.5 * (lam_b + lam_s)
        traded = min(d, g)
        p2p_buy = demand * (traded / d) if d > 0 else np.zeros_like(q)
        p2p_sell = supply * (traded / g) if g > 0 else np.zeros_like(q)
        return settle(self.name, q, lam_b, lam_s, p2p_buy, p2p_sell, traded, p_mmr, p_mmr, p_mmr)


@register
class DoubleAuctionMarket:
    """Uniform-price double auction on (quantity, limit price) bids with k-pricing.

    Buyers sorted by limit price high to low, sellers low to high (ties: lower index first);
    energy is matched along the two curves while bid >= ask.  The price is
    k·bid + (1 − k)·ask of the last matched pair, clipped into [λ_S, λ_B] so nobody does
    worse than the grid; the marginal bid or ask is filled partially.  Unmatched energy goes
    to the grid.  With nothing matched the P2P price is NaN and the quotes are λ_B / λ_S.
    """

    name = "double_auction"

    def __init__(self, k=0.5):
        self.k = check_range("k", k, 0.0, 1.0)

    def clear(self, q, price, lam_b, lam_s):
        buyers = np.flatnonzero(q > 0)
        sellers = np.flatnonzero(q < 0)
        p2p_buy, p2p_sell = np.zeros_like(q), np.zeros_like(q)
        if not (buyers.size and sellers.size):
            return settle(self.name, q, lam_b, lam_s, p2p_buy, p2p_sell, 0.0, math.nan, lam_b, lam_s)
        buyers = buyers[np.argsort(-price[buyers], kind="stable")]
        sellers = sellers[np.argsort(price[sellers], kind="stable")]
        bids, asks = price[buyers], price[sellers]
        b_cum, s_cum = np.cumsum(q[buyers]), np.cumsum(-q[sellers])
        # demand willing to pay at least each ask; the matched volume within seller m's
        # segment ends at min(s_cum[m], that demand), and the matched volumes form one interval
        n_willing = np.searchsorted(-bids, -asks, side="right")
        demand_at_ask = np.where(n_willing > 0, b_cum[np.maximum(n_willing - 1, 0)], 0.0)
        traded = float(np.minimum(s_cum, demand_at_ask).max())
        if traded <= 0:
            return settle(self.name, q, lam_b, lam_s, p2p_buy, p2p_sell, 0.0, math.nan, lam_b, lam_s)
        # the last matched pair holds the marginal kWh: the first segments reaching `traded`
        j = np.searchsorted(b_cum, traded, side="left")
        m = np.searchsorted(s_cum, traded, side="left")
        p = min(max(self.k * bids[j] + (1.0 - self.k) * asks[m], lam_s), lam_b)
        # fill = part of each segment below `traded`; exact previous sums keep later bids at 0
        p2p_buy[buyers] = np.clip(traded - _shifted(b_cum), 0.0, q[buyers])
        p2p_sell[sellers] = np.clip(traded - _shifted(s_cum), 0.0, -q[sellers])
        return settle(self.name, q, lam_b, lam_s, p2p_buy, p2p_sell, traded, p, lam_b, lam_s)


def _shifted(cum):
    """Cumulative sums before each element: [0, cum[0], ..., cum[-2]]."""
    return np.concatenate(([0.0], cum[:-1]))


# ---- entry point -----------------------------------------------------------------------------
DUST_KWH = 1e-9
"""|quantity| below this is floating-point round-off of a balanced prosumer, not a bid: it is
set to 0 so that e.g. 1e-16 kWh of "supply" cannot set the double auction's price."""


def check_bids(quantity_kwh, limit_price_eur_per_kwh, buy_tariff, sell_tariff):
    """Validated (q (N,), price (N,), λ_B, λ_S); ConfigError naming the field otherwise."""
    try:
        q = np.asarray(quantity_kwh, dtype=float)
        price = np.asarray(limit_price_eur_per_kwh, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"quantity_kwh / limit_price_eur_per_kwh: not numeric arrays ({exc})") from None
    if q.ndim != 1:
        raise ConfigError(f"quantity_kwh: expected shape (N,), one bid per participant, got {q.shape}")
    if price.ndim == 0:
        price = np.full(q.shape, float(price))
    elif price.shape != q.shape:
        raise ConfigError(f"limit_price_eur_per_kwh: expected shape {q.shape} like quantity_kwh, got {price.shape}")
    check_finite("quantity_kwh", q)
    check_finite("limit_price_eur_per_kwh", price)
    q = np.where(np.abs(q) < DUST_KWH, 0.0, q)
    lam_b = check_range("buy_tariff", buy_tariff, 0.0, math.inf, hi_open=True)
    lam_s = check_range("sell_tariff", sell_tariff, 0.0, lam_b, hi_open=True)
    return q, price, lam_b, lam_s


def clear(quantity_kwh, limit_price_eur_per_kwh, buy_tariff, sell_tariff, mechanism="sdr", **params):
    """Clear one interval's bids with the named mechanism (MARKETS); see the module docstring.

    quantity_kwh: (N,) signed energy, > 0 buys; limit_price_eur_per_kwh: (N,) or scalar;
    buy_tariff / sell_tariff: λ_B / λ_S [EUR/kWh] of the interval; params: mechanism options
    (e.g. k=0.5 for the double auction).
    """
    market = make_market(mechanism, **params)
    return market.clear(*check_bids(quantity_kwh, limit_price_eur_per_kwh, buy_tariff, sell_tariff))


if __name__ == "__main__":
    import timeit

    rng = np.random.default_rng(0)
    n = 100
    q, p = rng.normal(0.0, 1.0, n), rng.uniform(0.08, 0.25, n)
    for name in MARKETS:
        reps = 2000
        t = min(timeit.repeat(lambda: clear(q, p, 0.25, 0.08, name), number=reps, repeat=5)) / reps
        print(f"{name:15s} N={n}: {t * 1e6:6.1f} us per clear()")
