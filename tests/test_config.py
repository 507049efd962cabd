import pytest

from adaptlab.config import ConfigError, TrainConfig, load_config


def test_overrides_apply_and_parse_values(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: smollm2-135m\nmethod:\n  name: lora\n  r: 4\n")
    cfg = load_config(recipe, ["method.r=16", "optim.lr=1e-3", "packing=false", "method.target_modules=[q_proj]"])
    assert isinstance(cfg, TrainConfig)
    assert cfg.method.r == 16 and cfg.optim.lr == 1e-3 and cfg.packing is False
    assert cfg.method.target_modules == ["q_proj"]


def test_unknown_key_lists_allowed_keys(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.learning_rate'; allowed here: .*lr"):
        load_config(recipe)
    with pytest.raises(ConfigError, match=r"unknown key 'epochz'; allowed here: .*max_steps"):
        load_config(None, ["epochz=3"])


def test_bad_value_and_bad_yaml_name_the_place(tmp_path):
    with pytest.raises(ConfigError, match=r"optim.schedule"):
        load_config(None, ["optim.schedule=wavy"])
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model: x\n  bad: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(recipe)


def test_example_recipes_validate():
    for name in ["sft-lora", "sft-full"]:
        cfg = load_config(f"examples/{name}.yaml")
        assert cfg.data.train
