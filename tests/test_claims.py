"""The claims suite: configurations, verdicts from their stated rules, and a quick run."""

import copy
from pathlib import Path

import numpy as np
import pytest

from bncourse import claims, cli
from bncourse.results import check_result, load_results

ROOT = Path(__file__).resolve().parents[1]


def layer(gamma, std, beta, mean):
    return {"name": "bn", "gamma": gamma, "beta": beta, "input_std": std, "input_mean": mean}


def record(variant, seed, acc, *, max_bias=1e-9, change=1e-7, params=None, layers=None):
    config = claims.claim_configs(claims.CLAIMS["bias-before-bn"], "quick")[0]
    config = dict(config, variant=variant, seed=seed)
    r = {"config": config, "test": {"accuracy": acc, "loss": 0.4},
         "n_params": {"trainable": params or (1000 if variant == "bias" else 900)},
         "layers": layers or [layer([1.0, 2.0, 0.5], [1.1, 1.8, 0.6], [0.0, 0.1, 0.2],
                                    [0.1, 0.0, 0.2])]}
    if variant == "bias":
        r["max_abs_bias"], r["training_mode_change_without_bias"] = max_bias, change
    return r


def judge(records):
    return {v.claim: v for v in claims.CLAIMS["bias-before-bn"].judge(records)}


def test_claim_8_supported_by_equal_accuracy_and_a_bias_that_never_moves():
    verdicts = judge([record("bias", 0, 0.85), record("nobias", 0, 0.851)])
    assert verdicts[8].verdict == "supported"
    assert verdicts[8].numbers["trainable parameters saved"] == 100


@pytest.mark.parametrize("kwargs", [{"acc": 0.80}, {"max_bias": 0.5}])
def test_claim_8_rejected_when_a_rule_fails(kwargs):
    acc = kwargs.pop("acc", 0.85)
    assert judge([record("bias", 0, acc, **kwargs), record("nobias", 0, 0.85)])[8].verdict == \
        "not supported"


def test_claim_10_is_judged_on_the_gap_between_gamma_and_the_input_std():
    close = [layer([1.0, 2.0, 0.5], [1.1, 1.8, 0.6], [0, 0, 0], [0, 0, 0])]
    far = [layer([1.0, 1.0, 1.0], [0.1, 0.2, 0.1], [0, 0, 0], [0, 0, 0])]
    assert judge([record("bias", 0, 0.85), record("nobias", 0, 0.85, layers=close)])[10].verdict \
        == "supported"
    assert judge([record("bias", 0, 0.85), record("nobias", 0, 0.85, layers=far)])[10].verdict \
        == "not supported"


def test_claim_configurations():
    experiment = claims.CLAIMS["bias-before-bn"]
    full = claims.claim_configs(experiment, "full")
    assert [(c["seed"], c["variant"]) for c in full] == [
        (s, v) for s in (0, 1, 2) for v in ("bias", "nobias")]
    assert {c["train"] for c in full} == {20000}
    with pytest.raises(ValueError, match="profile must be one of quick, full"):
        claims.claim_configs(experiment, "medium")


@pytest.mark.slow
def test_quick_claim_run_end_to_end(tmp_path, capsys, monkeypatch):
    out = tmp_path / "claims"
    assert cli.main(["reproduce", "--profile", "quick", "--only", "bias-before-bn",
                     "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "claim 8: A bias in the layer before BN is redundant" in stdout
    records, bad = load_results(out)
    assert not bad and len(records) == 2
    with_bias = next(r for r in records if r["config"]["variant"] == "bias")
    # BN subtracts the batch mean, so the bias gets no gradient and stays at its initial 0,
    # and in training mode the output does not depend on it.
    assert with_bias["max_abs_bias"] < 1e-6
    assert with_bias["training_mode_change_without_bias"] < 1e-5
    assert cli.main(["report", str(out), "--claims"]) == 0
    assert (out / claims.VERDICTS_FILE).read_text().startswith("claim 8:")
    # A claim result whose experiment definition changed is stale.
    path = next(out.rglob("nobias-*.json"))
    changed = claims.ClaimExperiment(**{
        **claims.CLAIMS["bias-before-bn"].__dict__,
        "settings": {"quick": {"train": 999, "test": 1000, "epochs": 2}, "full": {}}})
    monkeypatch.setitem(claims.CLAIMS, "bias-before-bn", changed)
    assert any(p.startswith("stale") for p in check_result(path).problems)


def test_committed_verdicts_are_what_the_code_computes():
    """results/claims-verdicts.txt is exactly the table the code makes from results/."""
    results = ROOT / "results"
    records, _ = load_results(results) if results.exists() else ([], [])
    computed = claims.verdicts(records)
    committed = results / claims.VERDICTS_FILE
    if not computed:
        assert not committed.exists(), "verdicts committed without the results behind them"
        return
    assert committed.read_text() == claims.format_verdicts(computed) + "\n"
