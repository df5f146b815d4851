"""The method registry (``xjax._internal.registry``) that the CLI, Lens and the contract suite read."""

import inspect

import pytest

import xjax
from tests.attributions.test_contract import EXPLAINERS
from xjax._internal import registry


def test_every_registered_method_has_contract_coverage():
    covered = {name for name, _ in EXPLAINERS}
    missing = set(registry.METHODS) - covered
    assert not missing, f"registered methods without contract-suite coverage: {missing}"


def test_entries_match_the_factories():
    for name, method in registry.REGISTRY.items():
        f = registry.factory(name)
        assert f is getattr(xjax.attributions, name)
        first = list(inspect.signature(f).parameters)[:2]
        assert (first == ["features_fn", "head_fn"]) == method.split, name
        # stochastic methods are exactly those whose explainer needs a key: their docstring
        # and their contract test say so; here, the registry agrees with the package's list
        assert (name in xjax.attributions.STOCHASTIC) == method.stochastic
        assert method.summary


def test_hyperparameters_are_the_keyword_only_literals():
    hp = registry.hyperparameters("sobol")
    assert hp["nb_design"] == registry.Hyperparameter("nb_design", "int", 32)
    assert hp["grid_size"].default == 8 and hp["sigma"].annotation == "float | None"
    assert "score_fn" not in hp and "design_key" not in hp and "model_fn" not in hp
    assert registry.hyperparameters("grad_cam")["resize"].default == "bilinear"
    with pytest.raises(ValueError, match="unknown attribution method 'magic'"):
        registry.hyperparameters("magic")


def test_parse_value():
    assert registry.parse_value("8") == 8 and registry.parse_value("0.5") == 0.5
    assert registry.parse_value("None") is None and registry.parse_value("(0, 1)") == (0, 1)
    assert registry.parse_value("blur") == "blur" and registry.parse_value("True") is True


def test_from_name_checks_hyperparameters_and_the_split():
    m = xjax.models.small_cnn(pretrained="fashion_mnist")
    with pytest.raises(ValueError, match=r"sobol: unknown hyperparameter\(s\) \['steps'\]"):
        registry.from_name("sobol", m, steps=3)
    with pytest.raises(ValueError, match="grad_cam: model needs features_fn and head_fn"):
        registry.from_name("grad_cam", m._replace(features_fn=None))
    e = registry.from_name("integrated_gradients", m, steps=3)
    assert callable(e)
