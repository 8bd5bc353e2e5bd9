"""The one registry behind supernet families, search strategies and objectives."""
from __future__ import annotations

import warnings

import pytest

from supernas.errors import ConfigError, SupernasWarning
from supernas.measure.objectives import _OBJECTIVES, register_objective
from supernas.registry import Registry
from supernas.search.base import _STRATEGIES, register_strategy
from supernas.search.evolution import RandomSearch
from supernas.supernets.base import family_class


def test_unknown_names_are_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown supernet family 'mbv4'; known: .*custom.*mbv3"):
        family_class("mbv4")
    reg: Registry[int] = Registry("thing")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and "a" in reg and len(reg) == 2
    with pytest.raises(ConfigError, match=r"unknown thing 'c'; known: a, b"):
        reg.get("c")


def test_a_second_registration_warns_and_the_later_entry_wins():
    with pytest.warns(SupernasWarning, match=r"search strategy 'twice' registered twice"):
        try:
            register_strategy("twice")(type("First", (RandomSearch,), {}))
            second = register_strategy("twice")(type("Second", (RandomSearch,), {}))
            assert _STRATEGIES.get("twice") is second
        finally:
            _STRATEGIES.remove("twice")


def test_built_in_objectives_bind_their_functions_without_a_warning_but_a_user_override_warns():
    import supernas.measure.evaluator  # noqa: F401  (binds the built-in objectives' functions)

    with warnings.catch_warnings():
        warnings.simplefilter("error", SupernasWarning)
        assert _OBJECTIVES.get("macs").fn is not None  # declared, then bound by the evaluator, silently
    original = _OBJECTIVES.get("params")
    try:
        with pytest.warns(SupernasWarning, match=r"objective 'params' registered twice"):
            register_objective("params", "min")(lambda ctx: 0.0)
    finally:
        _OBJECTIVES.add("params", original, replaces=True)
    assert _OBJECTIVES.get("params") is original
