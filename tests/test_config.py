import pytest

from ageest.config import Config, config_hash, load_config, parse_override
from ageest.errors import ConfigError


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
    assert config_hash(c) == config_hash(load_config(f, ["image_size=112", "pretrained=none", "device=cpu",
                                                          "flip=false", "lr_milestones=3"]))


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
