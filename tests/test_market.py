"""Market layer: tariffs, clearing invariants for every mechanism, golden values, mosaik adapter."""

import json
import timeit

import mosaik
import mosaik_api_v3
import numpy as np
import pytest
from mosaik.starters import PythonStarter
from mosaik_probe import Collector

from simulators.market.clearing import MARKETS, clear
from simulators.market.sim import MarketSim
from simulators.market.tariffs import TARIFFS, Tariff, make_tariff
from simulators.validation import ConfigError

ATOL = 1e-9
LB, LS = 0.25, 0.08  # the flat preset's retail / feed-in prices [EUR/kWh]


# ---- random and edge-case bids ---------------------------------------------------------------
def _cases(seed=0, n_draws=300):
    """(q, limit price, λ_B, λ_S) tuples: edge cases first, then seeded random draws."""
    p3 = np.array([0.10, 0.15, 0.20])
    cases = [
        (np.array([1.0, 2.0, 0.5]), p3, LB, LS),  # all buyers
        (np.array([-1.0, -2.0, -0.5]), p3, LB, LS),  # all sellers
        (np.array([1.5]), np.array([0.2]), LB, LS),  # single buyer
        (np.array([-1.5]), np.array([0.1]), LB, LS),  # single seller
        (np.zeros(4), np.full(4, 0.15), LB, LS),  # all zero
        (np.zeros(0), np.zeros(0), LB, LS),  # nobody
        (np.array([2.0, -2.0, 0.0]), p3, LB, LS),  # supply == demand
        (np.array([1.0, -3.0]), np.array([0.2, 0.1]), 0.30, 0.0),  # zero feed-in
    ]
    rng = np.random.default_rng(seed)
    for _ in range(n_draws):
        n = int(rng.integers(1, 40))
        q = rng.normal(rng.normal(0.0, 1.0), 2.0, n)  # skewed draws: long and short markets alike
        q[rng.random(n) < 0.2] = 0.0
        lam_s = rng.uniform(0.0, 0.12)
        lam_b = lam_s + rng.uniform(0.01, 0.3)
        price = rng.uniform(max(lam_s - 0.05, 0.0), lam_b + 0.05, n)
        cases.append((q, price, lam_b, lam_s))
    return cases


CASES = _cases()
_RESULTS = {}


def results(mechanism):
    """[(case, ClearingResult)] for every case, cleared once per mechanism."""
    if mechanism not in _RESULTS:
        _RESULTS[mechanism] = [(c, clear(*c, mechanism=mechanism)) for c in CASES]
    return _RESULTS[mechanism]


# ---- invariants, every mechanism ------------------------------------------------------------
@pytest.mark.parametrize("mechanism", list(MARKETS))
def test_energy_is_conserved_in_every_clearing(mechanism):
    for (q, _, _, _), r in results(mechanism):
        flows = (r.p2p_buy_kwh, r.p2p_sell_kwh, r.grid_buy_kwh, r.grid_sell_kwh)
        assert all(f.shape == q.shape and (f >= 0).all() for f in flows)
        assert r.p2p_buy_kwh.sum() == pytest.approx(r.traded_kwh, abs=ATOL)
        assert r.p2p_sell_kwh.sum() == pytest.approx(r.traded_kwh, abs=ATOL)
        net = r.p2p_buy_kwh + r.grid_buy_kwh - r.p2p_sell_kwh - r.grid_sell_kwh
        np.testing.assert_allclose(net, q, atol=ATOL)
        buys = r.p2p_buy_kwh + r.grid_buy_kwh > ATOL
        sells = r.p2p_sell_kwh + r.grid_sell_kwh > ATOL
        assert not (buys & sells).any(), "a participant both buys and sells"
        assert r.demand_kwh == pytest.approx(q[q > 0].sum()) and r.supply_kwh == pytest.approx(-q[q < 0].sum())
        assert r.traded_kwh <= min(r.demand_kwh, r.supply_kwh) + ATOL


@pytest.mark.parametrize("mechanism", list(MARKETS))
def test_prices_stay_between_feed_in_and_retail(mechanism):
    for (_, _, lam_b, lam_s), r in results(mechanism):
        prices = [r.price_buy_eur_per_kwh, r.price_sell_eur_per_kwh]
        if r.traded_kwh > 0:
            prices.append(r.price_p2p_eur_per_kwh)
        for p in prices:
            assert lam_s - ATOL <= p <= lam_b + ATOL, (mechanism, p, lam_s, lam_b)


@pytest.mark.parametrize("mechanism", list(MARKETS))
def test_p2p_money_is_budget_balanced(mechanism):
    for (q, _, lam_b, lam_s), r in results(mechanism):
        grid_money = lam_b * r.grid_buy_kwh - lam_s * r.grid_sell_kwh
        p2p_money = r.cost_eur - grid_money  # > 0: paid to peers, < 0: received from peers
        paid, received = p2p_money[q > 0].sum(), -p2p_money[q < 0].sum()
        assert paid == pytest.approx(received, abs=ATOL)
        assert r.cost_eur.sum() == pytest.approx(grid_money.sum(), abs=ATOL)
        if r.traded_kwh > 0:  # one uniform unit price for every P2P kWh
            np.testing.assert_allclose(p2p_money, r.price_p2p_eur_per_kwh * (r.p2p_buy_kwh - r.p2p_sell_kwh),
                                       atol=ATOL)


@pytest.mark.parametrize("mechanism", list(MARKETS))
def test_reported_prices_are_each_sides_average(mechanism):
    for (q, _, _, _), r in results(mechanism):
        if r.demand_kwh > 0:
            assert r.cost_eur[q > 0].sum() == pytest.approx(r.price_buy_eur_per_kwh * r.demand_kwh, abs=ATOL)
        if r.supply_kwh > 0:
            assert -r.cost_eur[q < 0].sum() == pytest.approx(r.price_sell_eur_per_kwh * r.supply_kwh, abs=ATOL)


@pytest.mark.parametrize("mechanism", list(MARKETS))
def test_nobody_pays_more_than_the_grid_alternative(mechanism):
    for (q, _, lam_b, lam_s), r in results(mechanism):
        alone = np.where(q > 0, q * lam_b, q * lam_s)
        assert (r.cost_eur <= alone + ATOL).all()


@pytest.mark.parametrize("mechanism", list(MARKETS))
def test_clearing_does_not_depend_on_participant_order(mechanism):
    for (q, price, lam_b, lam_s), r in results(mechanism)[8:40]:
        perm = np.random.default_rng(len(q)).permutation(len(q))
        if len(np.unique(price[perm])) < len(price):
            continue  # ties are broken by index, so order matters by design
        s = clear(q[perm], price[perm], lam_b, lam_s, mechanism)
        np.testing.assert_allclose(s.cost_eur, r.cost_eur[perm], atol=ATOL)
        assert s.price_buy_eur_per_kwh == pytest.approx(r.price_buy_eur_per_kwh)


# ---- SDR ---------------------------------------------------------------------------------------
def _liu(sdr, lam_b=LB, lam_s=LS):
    p_sell = lam_b * lam_s / ((lam_b - lam_s) * sdr + lam_s)
    return p_sell * sdr + lam_b * (1 - sdr), p_sell


@pytest.mark.parametrize("sdr", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_sdr_follows_liu_formula(sdr):
    r = clear([3.0, 1.0, -4.0 * sdr], [0.0] * 3, LB, LS, "sdr")
    p_buy, p_sell = _liu(sdr)
    assert r.price_buy_eur_per_kwh == pytest.approx(p_buy, rel=1e-12)
    assert r.price_sell_eur_per_kwh == pytest.approx(p_sell, rel=1e-12)
    np.testing.assert_allclose(r.p2p_buy_kwh[:2], [3.0 * sdr, 1.0 * sdr], atol=ATOL)
    if sdr == 0.0:
        assert r.price_buy_eur_per_kwh == pytest.approx(LB) and r.price_sell_eur_per_kwh == pytest.approx(LB)
    if sdr == 1.0:
        assert r.price_buy_eur_per_kwh == pytest.approx(LS) and r.price_sell_eur_per_kwh == pytest.approx(LS)


def test_sdr_above_one_sells_pro_rata_at_feed_in():
    r = clear([1.0, -3.0, -1.0], [0.0] * 3, LB, LS, "sdr")  # SDR = 4
    assert r.price_buy_eur_per_kwh == r.price_sell_eur_per_kwh == LS
    np.testing.assert_allclose(r.p2p_sell_kwh, [0.0, 0.75, 0.25])
    np.testing.assert_allclose(r.grid_sell_kwh, [0.0, 2.25, 0.75])
    np.testing.assert_allclose(r.cost_eur, [LS, -3 * LS, -LS])


@pytest.mark.parametrize("q, prices", [
    ([-1.0, -2.0, 0.0], (LS, LS)),  # no demand: SDR undefined, everything to the grid at λ_S
    ([1.0, 2.0], (LB, LB)),  # no supply: SDR = 0, buyers pay retail
    ([0.0, 0.0], (LS, LS)),  # nobody trades
])
def test_sdr_edge_cases(q, prices):
    r = clear(q, 0.0, LB, LS, "sdr")
    assert (r.price_buy_eur_per_kwh, r.price_sell_eur_per_kwh) == pytest.approx(prices)
    assert r.traded_kwh == 0.0


def test_sdr_golden():
    # λ_B 0.25, λ_S 0.08; buyers 3 and 1 kWh, seller 2 kWh: D = 4, G = 2, SDR = 0.5
    # p_sell = 0.25·0.08 / (0.17·0.5 + 0.08) = 0.02 / 0.165 = 0.121212...
    # p_buy  = 0.121212·0.5 + 0.25·0.5 = 0.185606...
    # costs: 3·0.185606 = 0.556818, 1·0.185606 = 0.185606, seller −2·0.121212 = −0.242424
    r = clear([3.0, 1.0, -2.0], [0.0] * 3, LB, LS, "sdr")
    assert r.price_sell_eur_per_kwh == pytest.approx(0.02 / 0.165, rel=1e-12)
    assert r.price_buy_eur_per_kwh == pytest.approx(0.185606060606, rel=1e-9)
    np.testing.assert_allclose(r.cost_eur, [0.556818181818, 0.185606060606, -0.242424242424], rtol=1e-9)
    np.testing.assert_allclose(r.p2p_buy_kwh, [1.5, 0.5, 0.0])
    assert r.cost_eur.sum() == pytest.approx(2 * LB)  # the community buys the 2 kWh shortfall


# ---- MMR ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("q", [[3.0, -1.0], [1.0, -1.0], [1.0, -3.0, -1.0]])
def test_mmr_follows_long_formula(q):
    r = clear(q, 0.0, LB, LS, "mmr")
    d, g = sum(x for x in q if x > 0), -sum(x for x in q if x < 0)
    p_mmr = (LB + LS) / 2
    p_buy = p_mmr if g >= d else (p_mmr * g + LB * (d - g)) / d
    p_sell = p_mmr if g <= d else (p_mmr * d + LS * (g - d)) / g
    assert (r.price_buy_eur_per_kwh, r.price_sell_eur_per_kwh) == pytest.approx((p_buy, p_sell), rel=1e-12)


def test_mmr_golden():
    # λ_B 0.25, λ_S 0.08: p_mmr = 0.165; D = 4 > G = 2, sellers all P2P, buyers half P2P
    # p_buy = (0.165·2 + 0.25·2) / 4 = 0.2075; costs 3·0.2075 = 0.6225, 0.2075, −2·0.165 = −0.33
    r = clear([3.0, 1.0, -2.0], [0.0] * 3, LB, LS, "mmr")
    assert (r.price_buy_eur_per_kwh, r.price_sell_eur_per_kwh) == pytest.approx((0.2075, 0.165))
    np.testing.assert_allclose(r.cost_eur, [0.6225, 0.2075, -0.33], rtol=1e-12)


# ---- double auction ----------------------------------------------------------------------------
DA_Q = [3.0, 1.0, -2.0, -2.0]
DA_P = [0.20, 0.15, 0.10, 0.18]


@pytest.mark.parametrize("k, price", [(0.5, 0.19), (0.25, 0.185), (1.0, 0.20), (0.0, 0.18)])
def test_double_auction_golden(k, price):
    # buyers A 3 kWh @0.20, B 1 kWh @0.15; sellers C 2 kWh @0.10, D 2 kWh @0.18.
    # Along the curves: 0-2 kWh A/C (0.20 >= 0.10), 2-3 kWh A/D (0.20 >= 0.18), 3-4 kWh B/D
    # (0.15 < 0.18) stops: traded 3 kWh, last pair A/D, price k·0.20 + (1−k)·0.18 (k=0.5: 0.19).
    # k=0.5: A 3·0.19 = 0.57; B grid 0.25; C −2·0.19 = −0.38; D −0.19 − 1·0.08 = −0.27
    r = clear(DA_Q, DA_P, LB, LS, "double_auction", k=k)
    assert r.traded_kwh == pytest.approx(3.0)
    assert r.price_p2p_eur_per_kwh == pytest.approx(price, rel=1e-12)
    np.testing.assert_allclose(r.p2p_buy_kwh, [3.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(r.p2p_sell_kwh, [0.0, 0.0, 2.0, 1.0])
    np.testing.assert_allclose(r.cost_eur, [3 * price, LB, -2 * price, -price - LS], rtol=1e-12)
    if k == 0.5:
        np.testing.assert_allclose(r.cost_eur, [0.57, 0.25, -0.38, -0.27], rtol=1e-12)
        assert r.price_buy_eur_per_kwh == pytest.approx((0.57 + 0.25) / 4)


def test_double_auction_no_trade_when_bids_below_asks():
    r = clear([1.0, 2.0, -1.0, -1.0], [0.12, 0.14, 0.15, 0.20], LB, LS, "double_auction")
    assert r.traded_kwh == 0.0 and np.isnan(r.price_p2p_eur_per_kwh)
    assert (r.price_buy_eur_per_kwh, r.price_sell_eur_per_kwh) == (LB, LS)
    np.testing.assert_allclose(r.cost_eur, [LB, 2 * LB, -LS, -LS])


@pytest.mark.parametrize("mechanism", sorted(MARKETS))
def test_round_off_dust_is_not_a_bid(mechanism):
    """A balanced prosumer's 1e-16 kWh of 'supply' must not quote the sell price."""
    dust = clear([2.0, 1.0, -5e-17], [0.125] * 3, LB, LS, mechanism)
    clean = clear([2.0, 1.0, 0.0], [0.125] * 3, LB, LS, mechanism)
    assert dust.supply_kwh == 0.0 and dust.price_sell_eur_per_kwh == clean.price_sell_eur_per_kwh
    np.testing.assert_array_equal(dust.cost_eur, clean.cost_eur)


def test_double_auction_price_between_matched_bids_and_asks_and_nothing_left_to_match():
    for q, price, lam_b, lam_s in CASES:
        price = np.clip(price, lam_s, lam_b)  # inside the band: clipping never moves the price
        for k in (0.0, 0.3, 1.0):
            r = clear(q, price, lam_b, lam_s, "double_auction", k=k)
            p = r.price_p2p_eur_per_kwh
            if r.traded_kwh > 0:
                assert (price[r.p2p_buy_kwh > 0] >= p - ATOL).all()
                assert (price[r.p2p_sell_kwh > 0] <= p + ATOL).all()
            left_bids, left_asks = price[r.grid_buy_kwh > ATOL], price[r.grid_sell_kwh > ATOL]
            if left_bids.size and left_asks.size:
                assert left_bids.max() < left_asks.min()


def test_double_auction_breaks_ties_by_index():
    r = clear([1.0, 1.0, -1.5], [0.2, 0.2, 0.1], LB, LS, "double_auction")
    np.testing.assert_allclose(r.p2p_buy_kwh, [1.0, 0.5, 0.0])
    r = clear([1.0, -1.0, -1.0], [0.2, 0.1, 0.1], LB, LS, "double_auction")
    np.testing.assert_allclose(r.p2p_sell_kwh, [0.0, 1.0, 0.0])
    # many ties in three price tiers (numpy's default sort is not stable there)
    bids = np.random.default_rng(0).choice([0.15, 0.2, 0.3], 60)
    n_top = int((bids == 0.3).sum())
    r = clear(np.r_[np.ones(60), -(n_top + 5.5)], np.r_[bids, 0.1], LB, LS, "double_auction")
    tier = np.flatnonzero(bids == 0.2)  # the marginal tier: first 5 filled, the 6th half, by index
    np.testing.assert_allclose(r.p2p_buy_kwh[tier], np.r_[np.ones(5), 0.5, np.zeros(len(tier) - 6)])
    assert (r.p2p_buy_kwh[:60][bids == 0.3] == 1.0).all() and (r.p2p_buy_kwh[:60][bids == 0.15] == 0.0).all()


def test_double_auction_clips_price_into_tariff_band():
    r = clear([1.0, -1.0], [0.40, 0.30], LB, LS, "double_auction")
    assert r.price_p2p_eur_per_kwh == LB
    r = clear([1.0, -1.0], [0.02, 0.01], LB, LS, "double_auction")
    assert r.price_p2p_eur_per_kwh == LS


# ---- bad inputs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("args, kwargs, field", [
    (([1.0, np.nan], [0.1, 0.1], LB, LS), {}, "quantity_kwh"),
    (([1.0, -1.0], [0.1, np.nan], LB, LS), {}, "limit_price_eur_per_kwh"),
    (([1.0, -1.0], [0.1, 0.1, 0.1], LB, LS), {}, "limit_price_eur_per_kwh"),
    (([[1.0, -1.0]], 0.1, LB, LS), {}, "quantity_kwh"),
    (([1.0, -1.0], 0.1, LB, LB), {}, "sell_tariff"),
    (([1.0, -1.0], 0.1, LB, 0.3), {}, "sell_tariff"),
    (([1.0, -1.0], 0.1, np.nan, LS), {}, "buy_tariff"),
    (([1.0, -1.0], 0.1, LB, LS), {"mechanism": "pay_as_bid"}, "mechanism"),
    (([1.0, -1.0], 0.1, LB, LS), {"mechanism": "double_auction", "k": 1.5}, "k"),
    (([1.0, -1.0], 0.1, LB, LS), {"mechanism": "sdr", "k": 0.5}, "market params"),
])
def test_bad_clearing_inputs_name_the_field(args, kwargs, field):
    with pytest.raises(ConfigError, match=field):
        clear(*args, **kwargs)


# ---- tariffs ---------------------------------------------------------------------------------------
def test_presets_round_trip_through_json():
    for name in TARIFFS:
        t = make_tariff(name)
        again = Tariff.from_dict(json.loads(json.dumps(t.to_dict())))
        assert again == t and again.name == name
        assert (t.sell_eur_per_kwh < t.buy_eur_per_kwh).all()
    assert make_tariff("flat").at(50) == (0.25, 0.08)


def test_time_of_use_maps_hours_to_steps_and_wraps_midnight():
    t = Tariff.time_of_use([(22, 6, 0.17, 0.08), (6, 17, 0.25, 0.08), (17, 21.5, 0.36, 0.10),
                            (21.5, 22, 0.25, 0.08)])
    assert t.at(0) == (0.17, 0.08) and t.at(23) == (0.17, 0.08) and t.at(24) == (0.25, 0.08)
    assert t.at(67) == (0.25, 0.08) and t.at(68) == (0.36, 0.10) and t.at(85) == (0.36, 0.10)
    assert t.at(86) == (0.25, 0.08) and t.at(88) == (0.17, 0.08) and t.at(95) == (0.17, 0.08)
    assert t.at(96 + 68) == t.at(68)
    tou = make_tariff("tou")
    assert tou.at(2)[0] < tou.at(40)[0] < tou.at(72)[0], "off-peak < shoulder < evening peak"


@pytest.mark.parametrize("build, match", [
    (lambda: Tariff.flat(0.1, 0.1), r"sell_eur_per_kwh: 0.1 at step 0 is not below buy_eur_per_kwh 0.1"),
    (lambda: Tariff.flat(-0.1, -0.2), "buy_eur_per_kwh: -0.1 at step 0 is negative"),
    (lambda: Tariff.flat(np.nan, 0.1), "buy: nan outside the allowed range"),
    (lambda: Tariff(np.full(96, np.inf), np.full(96, 0.1)), "buy_eur_per_kwh: non-finite value inf at index"),
    (lambda: Tariff(["x"] * 96, np.full(96, 0.1)), "buy_eur_per_kwh: .* is not an array of numbers"),
    (lambda: Tariff(np.full(95, 0.3), np.full(95, 0.1)), "buy_eur_per_kwh: expected 96 values"),
    (lambda: Tariff.time_of_use([(0, 12, 0.3, 0.1), (12, 24, 0.2, 0.25)]),
     "sell_eur_per_kwh: 0.25 at step 48 is not below buy_eur_per_kwh 0.2"),
    (lambda: Tariff.time_of_use([(0, 12, 0.3, 0.1)]), r"periods: no period covers 12:00"),
    (lambda: Tariff.time_of_use([(0, 13, 0.3, 0.1), (12, 24, 0.3, 0.1)]), r"periods\[1\].*overlaps.*12:00"),
    (lambda: Tariff.time_of_use([(0, 12.1, 0.3, 0.1), (12.1, 24, 0.3, 0.1)]), "end_hour: 12.1 is not a multiple"),
    (lambda: Tariff.time_of_use([(0, 25, 0.3, 0.1)]), r"periods\[0\].end_hour: 25"),
    (lambda: Tariff.time_of_use([(5, 5, 0.3, 0.1)]), "must not be empty"),
    (lambda: Tariff.from_dict({"buy_eur_per_kwh": [0.3] * 96}), "missing keys"),
    (lambda: make_tariff("spot"), "tariff: 'spot' is not one of"),
])
def test_tariff_validation_names_field_step_and_values(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_tariff_arrays_are_read_only():
    t = make_tariff("tou")
    with pytest.raises(ValueError):
        t.buy_eur_per_kwh[0] = 1.0


# ---- mosaik adapter ----------------------------------------------------------------------------------
BIDS = {  # mosaik time -> (quantities, limit prices) of the five bid sources
    0: ([2.0, -1.0, 0.5, -0.5, -1.0], [0.24, 0.10, 0.20, 0.09, 0.15]),
    900: ([-1.0, 1.5, 1.0, 0.25, 0.5], [0.12, 0.33, 0.28, 0.20, 0.30]),
}


class BidSource(mosaik_api_v3.Simulator):
    """Serves the fixed bids of BIDS, one entity per source."""

    def __init__(self):
        super().__init__({"api_version": "3.0", "type": "time-based", "models": {
            "Bids": {"public": True, "params": [], "attrs": ["bid_E[kWh]", "bid_price[EUR/kWh]"]}}})

    def init(self, sid, time_resolution=1.0):
        return self.meta

    def create(self, num, model):
        return [{"eid": f"b{i}", "type": model} for i in range(num)]

    def step(self, time, inputs, max_advance):
        self.time = time
        return time + 900

    def get_data(self, outputs):
        q, p = BIDS[self.time]
        return {eid: {attr: (q if attr == "bid_E[kWh]" else p)[int(eid[1:])] for attr in attrs}
                for eid, attrs in outputs.items()}


@pytest.mark.parametrize("mechanism", list(MARKETS))
def test_mosaik_market_equals_direct_clearing(mechanism):
    tariff = make_tariff("tou")
    world = mosaik.World({"Market": {"python": "simulators.market.sim:MarketSim"},
                          "Bids": PythonStarter(BidSource), "Collector": PythonStarter(Collector)}, debug=False)
    # start_step 67 = 16:45, so the two steps straddle the 17:00 shoulder -> peak change
    sim = world.start("Market", step_size=900, mechanism=mechanism, tariff=tariff.to_dict(), start_step=67)
    market = sim.Market.create(1)[0]
    parts = sim.Participant.create(4)
    sources = world.start("Bids").Bids.create(5)
    collector = world.start("Collector").Collector.create(1)[0]
    bid_attrs = ("bid_E[kWh]", "bid_price[EUR/kWh]")
    for src, part in zip(sources[:3], parts[:3]):
        world.connect(src, part, *bid_attrs)
    world.connect(sources[3], parts[3], *bid_attrs)  # two sources into participant 3 ...
    world.connect(sources[4], parts[3], *bid_attrs)  # ... add up (quantities) and average (prices)
    out = ("E_p2p_buy[kWh]", "E_p2p_sell[kWh]", "E_grid_buy[kWh]", "E_grid_sell[kWh]", "cost[EUR]",
           "price_buy[EUR/kWh]", "tariff_buy[EUR/kWh]")
    for part in parts:
        world.connect(part, collector, *out)
    world.connect(market, collector, "price_buy[EUR/kWh]", "price_sell[EUR/kWh]", "traded[kWh]", "mechanism",
                  "tariff_buy[EUR/kWh]", "price_p2p[EUR/kWh]")
    Collector.seen = {}
    world.run(until=2 * 900, print_progress=False)

    assert sorted(Collector.seen) == [0, 900]
    for t, step in ((0, 67), (900, 68)):
        q, p = (np.array(x) for x in BIDS[t])
        buy, sell = tariff.at(step)
        expected = clear(np.r_[q[:3], q[3] + q[4]], np.r_[p[:3], (p[3] + p[4]) / 2], buy, sell, mechanism)
        seen = Collector.seen[t]
        for attr, field in (("cost[EUR]", "cost_eur"), ("E_p2p_buy[kWh]", "p2p_buy_kwh"),
                            ("E_grid_sell[kWh]", "grid_sell_kwh")):
            np.testing.assert_allclose([seen[attr][e.full_id] for e in parts], getattr(expected, field), rtol=1e-12)
        assert seen["tariff_buy[EUR/kWh]"][market.full_id] == buy
        assert seen["mechanism"][market.full_id] == mechanism
        assert seen["traded[kWh]"][market.full_id] == pytest.approx(expected.traded_kwh)
        np.testing.assert_equal(seen["price_p2p[EUR/kWh]"][market.full_id], expected.price_p2p_eur_per_kwh)
        served = [seen["price_buy[EUR/kWh]"][e.full_id] for e in parts + [market]]
        np.testing.assert_allclose(served, expected.price_buy_eur_per_kwh, rtol=1e-12)
    assert Collector.seen[0]["tariff_buy[EUR/kWh]"][market.full_id] == 0.25  # 16:45 shoulder
    assert Collector.seen[900]["tariff_buy[EUR/kWh]"][market.full_id] == 0.36  # 17:00 peak


@pytest.mark.parametrize("kwargs, field", [
    ({"mechanism": "vickrey"}, "mechanism"),
    ({"start_step": 96}, "start_step"),
    ({"step_size": 60}, "step_size"),
    ({"tariff": {"buy_eur_per_kwh": [0.1] * 96, "sell_eur_per_kwh": [0.2] * 96}}, "sell_eur_per_kwh"),
    ({"mechanism": "double_auction", "params": {"k": -1}}, "k"),
])
def test_market_sim_rejects_bad_init(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        MarketSim().init("Market-0", **kwargs)


def test_market_sim_holds_one_market():
    sim = MarketSim()
    sim.init("Market-0")
    sim.create(1, "Market")
    with pytest.raises(ConfigError, match="exactly one Market"):
        sim.create(1, "Market")


def test_clearing_time_report():
    """Prints the time of one clear() with 100 participants (no timed assertion: shared CPUs)."""
    rng = np.random.default_rng(1)
    q, p = rng.normal(0.0, 1.0, 100), rng.uniform(LS, LB, 100)
    for name in MARKETS:
        t = min(timeit.repeat(lambda: clear(q, p, LB, LS, name), number=200, repeat=3)) / 200
        print(f"clear() {name}, N=100: {t * 1e6:.1f} us")
