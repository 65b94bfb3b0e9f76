import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from ageest.config import _CHOICES, Config, field_names, load_config, parse_override
from ageest.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
# Set by the workflow from keep_models, never by a config: in Config, not in the schema or table.
WORKFLOW_SET = {"save_model"}


def test_defaults_are_the_seed_recipe():
    c = Config()
    assert (c.epochs, c.freeze_epochs, c.batch_size, c.lr, c.lr_milestones) == (100, 10, 64, 0.002, (80,))
    assert (c.image_size, c.resize_size, c.lambda1, c.lambda2, c.num_classes) == (224, 256, 0.2, 0.05, 70)
    assert c.val_split == "subject" and c.val_rate == 0.1


def test_overrides_and_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 5\nfreeze_epochs: 1\nlr: 1e-3\nlr_milestones: [2, 4]\n")
    c = load_config(f, ["image_size=112", "pretrained=none", "device=cpu", "flip=false", "lr_milestones=3"])
    assert (c.epochs, c.lr, c.lr_milestones, c.image_size, c.resize_size) == (5, 0.001, (3,), 112, 128)
    assert (c.pretrained, c.device, c.flip) == ("none", "cpu", False)
    assert c == load_config(f, ["image_size=112", "pretrained=none", "device=cpu", "flip=false",
                                "lr_milestones=3"])


@pytest.mark.parametrize("override, key", [
    ("epochs=-1", "epochs"), ("epochs=abc", "epochs"), ("lr=0", "lr"), ("val_rate=1.5", "val_rate"),
    ("align=sideways", "align"), ("freeze_epochs=500", "freeze_epochs"), ("max_age=0", "max_age"),
    ("batch_size=1", "batch_size"), ("device=tpu", "device"), ("flip=3", "flip"),
])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [override])


def test_unknown_keys_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key.*epochz"):
        load_config(None, ["epochz=3"])
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("epochs")


def test_frozen():
    with pytest.raises(Exception):
        Config().epochs = 3  # type: ignore[misc]


def test_age_grid_is_one_class_per_year():
    ages = Config(min_age=3, max_age=7).age_grid()
    assert ages.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0] and len(ages) == Config(min_age=3, max_age=7).num_classes
    assert str(ages.dtype) == "torch.float32"


def test_removed_keys_are_gone():
    for key in ("align_margin",):
        with pytest.raises(ConfigError, match=f"unknown config key.*{key}"):
            load_config(None, [f"{key}=0.1"])
    import ageest.config

    assert not hasattr(ageest.config, "config_hash")


# --- one source: Config, the workflow schema and config/README.md name the same keys ------------


def _schema_training():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return schema["properties"]["training"]["properties"]


def _readme_training_table():
    """{key: (default cell, config.yaml cell)} from config/README.md's training table."""
    text = (ROOT / "config" / "README.md").read_text()
    section = text.split("## `training`", 1)[1].split("\n## ", 1)[0]
    lines = [l for l in section.splitlines() if l.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["key", "default", "config.yaml", "meaning"], header
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        keys = re.findall(r"`(\w+)`", cells[0])
        defaults, in_yaml = _cells(cells[1], len(keys)), _cells(cells[2], len(keys))
        for k, d, y in zip(keys, defaults, in_yaml):
            assert k not in rows, f"{k} twice in the table"
            rows[k] = (d, y)
    return rows


def _cells(cell, n):
    """'`0.2`, `0.05`' -> [0.2, 0.05] (YAML values); '–' -> [None] * n."""
    if cell == "–":
        return [None] * n
    values = [yaml.safe_load(v) for v in re.findall(r"`([^`]*)`", cell)]
    assert len(values) == n, cell
    return values


def test_schema_readme_and_config_name_the_same_keys():
    keys = set(field_names()) - WORKFLOW_SET
    assert set(_schema_training()) == keys
    assert set(_readme_training_table()) == keys


def test_schema_types_and_choices_follow_config():
    json_type = {"int": "integer", "float": "number", "bool": "boolean", "str": "string",
                 "tuple[int, ...]": "array"}
    props = _schema_training()
    for f in dataclasses.fields(Config):
        if f.name in WORKFLOW_SET:
            continue
        assert props[f.name]["type"] == json_type[str(f.type)], f.name
        assert props[f.name].get("enum") == (list(_CHOICES[f.name]) if f.name in _CHOICES else None), f.name
        assert "default" not in props[f.name], f"{f.name}: the default is Config's (see the schema's note)"


def test_readme_defaults_are_configs_and_the_study_column_is_config_yaml():
    defaults = Config().to_dict()
    study = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["training"]
    for key, (default, in_yaml) in _readme_training_table().items():
        assert default == defaults[key], f"{key}: README default {default!r}, Config {defaults[key]!r}"
        assert in_yaml == study.get(key), f"{key}: README config.yaml column {in_yaml!r}, file {study.get(key)!r}"
