"""The pipeline configuration file and its overrides."""


import pytest


def test_pipeline_configuration_is_validated(tmp_path):
    from active_finetuning.errors import InputError
    from active_finetuning.kfp.config import check_cron, load_config, parse_overrides

    path = tmp_path / "c.yaml"
    path.write_text("pipeline:\n  manifest_uri: a\n  test_manifest_uri: b\n  budgets: [1%, 500]\n  seeds: 2\n")
    config = load_config(str(path))
    assert config.parameters["budgets"] == ["1%", "500"] and config.parameters["seeds"] == [2]
    path.write_text("pipeline:\n  manifest_uri: a\n  test_manifest_uri: b\n  budget: 1%\n")
    with pytest.raises(InputError, match=r"unknown parameter\(s\) \['budget'\]"):
        load_config(str(path))
    path.write_text("pipeline:\n  manifest_uri: a\n")
    with pytest.raises(InputError, match="missing required parameter.*test_manifest_uri"):
        load_config(str(path))
    path.write_text("pipelines: {}\n")
    with pytest.raises(InputError, match="unknown section"):
        load_config(str(path))
    assert parse_overrides(["budgets=[1%, 2%]", "seeds=[0, 1]", "method_params={activeft: {iterations: 5}}"]) == {
        "budgets": ["1%", "2%"], "seeds": [0, 1], "method_params": {"activeft": {"iterations": 5}}}
    with pytest.raises(InputError, match="6, seconds first: use '0 0 2 \\* \\* \\*'"):
        check_cron("0 2 * * *")
    assert check_cron("0  0 2 * * *") == "0 0 2 * * *"
