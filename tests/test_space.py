import collections
import itertools
import json

import numpy as np
import pytest

from supernas import Choice, ConfigError, SearchSpace, create_supernet


def toy_space() -> SearchSpace:
    return SearchSpace([
        Choice("depth", (1, 2, 3)),
        Choice("b1.k", (3, 5), ("depth", 0)),
        Choice("b2.k", (3, 5), ("depth", 1)),
        Choice("b3.k", (3, 5, 7), ("depth", 2)),
        Choice("width", (0.5, 1.0)),
    ], presets={"mid": {"depth": 2, "b1.k": 5, "b2.k": 3, "width": 1.0}})


def brute_force_size(space: SearchSpace) -> int:
    """Distinct canonical keys over the full cartesian product (inactive values included)."""
    keys = set()
    for combo in itertools.product(*(c.options for c in space.choices)):
        keys.add(space.key(dict(zip(space.names, combo))))
    return len(keys)


def test_size_matches_brute_force():
    s = toy_space()
    assert s.size() == (2 + 4 + 12) * 2 == brute_force_size(s)
    assert s.size() == len({s.key(c) for c in s.enumerate()})


def test_mbv3_reduced_size_matches_brute_force():
    net = create_supernet("mbv3", num_classes=2, image_size=8, depths=(1, 2), kernel_sizes=(3, 5),
                          expand_ratios=(3,), width_mult=0.25)
    s = net.space
    per_stage = 2 + 4
    assert s.size() == per_stage ** 5
    keys = {s.key(c) for c in s.enumerate()}
    assert len(keys) == s.size()


def test_mbv3_size_is_paper_count():
    s = create_supernet("mbv3").space
    assert s.size() == (9 ** 2 + 9 ** 3 + 9 ** 4) ** 5
    assert 2.1e19 < s.size() < 2.3e19


def test_sample_uniform_over_configs():
    s = toy_space()
    n = 18000
    counts = collections.Counter(s.key(s.sample(seed=i)) for i in range(n))
    assert len(counts) == s.size()
    expected = n / s.size()
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    # 35 degrees of freedom: the 99.9% quantile of chi-square is ~66
    assert chi2 < 66, chi2


def test_a_prior_changes_what_is_sampled_not_what_exists():
    base = toy_space()
    s = SearchSpace([*base.choices[:2], Choice("b1.p", ("a", "b"), ("depth", 0), (0.9, 0.1)), *base.choices[2:],
                     Choice("p", ("a", "b"), None, (0.75, 0.25))])
    assert s.size() == base.size() * 2 * 2 == brute_force_size(s)  # every option still exists
    n = 8000
    draws = [s.sample(seed=i) for i in range(n)]
    assert abs(sum(d["p"] == "b" for d in draws) / n - 0.25) < 0.02
    assert abs(sum(d["b1.p"] == "b" for d in draws) / n - 0.1) < 0.015
    # a prior on a dependent does not make its depth likelier: depths drawn as in the space without it
    depth = collections.Counter(d["depth"] for d in draws)
    plain = collections.Counter(base.sample(seed=i)["depth"] for i in range(n))
    for k in (1, 2, 3):
        assert abs(depth[k] - plain[k]) / n < 0.025, (depth, plain)
    from supernas.bench.table import space_from_dict, space_to_dict

    assert space_from_dict(json.loads(json.dumps(space_to_dict(s)))).choices == s.choices  # a table keeps priors
    with pytest.raises(ConfigError, match="prior"):
        Choice("q", (1, 2), None, (1.0,))
    with pytest.raises(ConfigError, match="prior"):
        Choice("q", (1, 2), None, (0.0, 0.0))


def test_sample_is_seeded():
    s = create_supernet("mbv3").space
    assert s.sample(seed=3) == s.sample(seed=3)
    assert s.sample_many(5, seed=1) == s.sample_many(5, seed=1)
    assert len({s.key(c) for c in s.sample_many(50, seed=2)}) == 50


def test_largest_smallest_preset():
    s = toy_space()
    assert s.largest() == {"depth": 3, "b1.k": 5, "b2.k": 5, "b3.k": 7, "width": 1.0}
    assert s.smallest() == {"depth": 1, "b1.k": 3, "width": 0.5}
    assert s.preset("mid")["depth"] == 2
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        s.preset("nope")


def test_validate_errors_name_the_problem():
    s = toy_space()
    with pytest.raises(ConfigError, match="unknown choice 'depht'"):
        s.validate({"depht": 1, "b1.k": 3, "width": 0.5})
    with pytest.raises(ConfigError, match=r"invalid value 4 for 'depth'; allowed: 1, 2, 3"):
        s.validate({"depth": 4, "b1.k": 3, "width": 0.5})
    with pytest.raises(ConfigError, match="missing choice 'b2.k'"):
        s.validate({"depth": 2, "b1.k": 3, "width": 0.5})
    with pytest.raises(ConfigError, match="must be a mapping"):
        s.validate([1, 2])


def test_inactive_choices_are_dropped_from_key():
    s = toy_space()
    a = {"depth": 1, "b1.k": 3, "b2.k": 5, "width": 0.5}
    b = {"depth": 1, "b1.k": 3, "width": 0.5}
    assert s.key(a) == s.key(b)
    assert json.loads(s.key(a)) == b
    with pytest.raises(ConfigError):  # an inactive value must still be legal
        s.validate({"depth": 1, "b1.k": 3, "b2.k": 4, "width": 0.5})


def test_encode_decode_roundtrip_and_bounds():
    s = create_supernet("mbv3").space
    lo, hi = s.bounds()
    rng = np.random.default_rng(0)
    for i in range(50):
        cfg = s.sample(seed=i)
        assert s.decode(s.encode(cfg)) == cfg
        vec = rng.integers(lo, hi + 1)
        s.validate(s.decode(vec))  # any in-bounds vector is a valid config
    with pytest.raises(ConfigError, match="out of range"):
        s.decode(hi + 1)


def test_features_shape_and_inactive_zero():
    s = toy_space()
    f = s.features(s.smallest())
    assert f.shape == (len(s.feature_names()),)
    names = s.feature_names()
    assert f[names.index("b3.k#ord")] == 0 and f[names.index("b3.k=7")] == 0
    assert f[names.index("b1.k=3")] == 1
    assert len({tuple(s.features(c)) for c in s.enumerate()}) == s.size()
