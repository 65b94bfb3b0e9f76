import dataclasses
from pathlib import Path

import pytest
import yaml

from ageest.config import Config, field_names, load_config, parse_override
from ageest.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_reference_recipe():
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
    with pytest.raises(ConfigError, match=f"'{key}'") as e:
        load_config(None, [override])
    assert e.value.key == key


def test_unknown_keys_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key.*epochz") as e:
        load_config(None, ["epochz=3"])
    assert e.value.keys == ("epochz",)
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


def test_non_finite_numbers_are_refused_but_never_checkpointing_is_infinity():
    import math

    for key in ("lr", "lambda1", "dldl_sigma", "rotate"):
        for bad in (math.inf, math.nan):
            with pytest.raises(ConfigError, match=f"config key '{key}': must be a finite number"):
                Config(**{key: bad})
    assert Config(checkpoint_every_s=math.inf).checkpoint_every_s == math.inf
    with pytest.raises(ConfigError, match="checkpoint_every_s': must be a finite number"):
        Config(checkpoint_every_s=math.nan)


# --- one source: each key is a field of Config; the README table and the loss defaults follow it ---


def test_readme_training_table_is_the_generated_one():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from config_docs import README, rendered

    text = README.read_text()
    assert rendered(text) == text, "config/README.md's training table is stale: run python tools/config_docs.py"


def test_the_schema_leaves_training_keys_to_config():
    training = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())[
        "properties"]["training"]
    assert "properties" not in training and training["type"] == "object"


def test_every_key_has_a_doc_and_its_range_is_checked():
    for f in dataclasses.fields(Config):
        assert f.metadata["doc"], f.name
        for bad in ("low", "high"):
            edge = f.metadata[bad]
            if edge is None or f.name == "image_size" and bad == "high":
                continue
            step = (-1 if bad == "low" else 1) * (0 if f.metadata[f"{bad}_open"] else 1)
            value = edge + step if _base(f) is int else edge + step * 0.5
            with pytest.raises(ConfigError) as e:
                Config(**{f.name: value})
            assert e.value.key == f.name


def _base(f):
    return {"int": int, "float": float}.get(str(f.type))
