"""RunConfig: YAML loading, key.sub=value overrides, validation messages, round trip."""

from pathlib import Path

import pytest

from spherevae.training.config import (
    RunConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_round_trip(path, tmp_path):
    cfg = load_config(path)
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_overrides_are_parsed_as_yaml_scalars():
    cfg = load_config(
        CONFIGS[0],
        [
            "optim.lr=3e-4",
            "train.amp=bf16",
            "model.channels=[8, 16]",
            "schedule.params.quench_epochs=7",
            "model.project_to_sphere=false",
            "optim.grad_clip=null",
            "train.epochs=2",
        ],
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.train.amp == "bf16"
    assert cfg.model.channels == (8, 16)
    assert cfg.schedule.params["quench_epochs"] == 7
    assert cfg.model.project_to_sphere is False
    assert cfg.optim.grad_clip is None
    assert cfg.train.epochs == 2


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert config_from_dict({"optim": {"lr": 1}}).optim.lr == 1.0
    with pytest.raises(TypeError, match=r"train\.epochs must be an integer, got 2\.5"):
        config_from_dict({"train": {"epochs": 2.5}})
    with pytest.raises(TypeError, match=r"train\.compile must be true or false"):
        config_from_dict({"train": {"compile": "yes"}})


def test_unknown_key_names_the_key_and_the_known_ones():
    with pytest.raises(
        ValueError, match=r"'optim\.learning_rate'.*known keys here: \['lr', 'betas'"
    ):
        load_config(None, ["optim.learning_rate=0.1"])
    with pytest.raises(ValueError, match=r"unknown config key 'optimizer'.*'optim'"):
        config_from_dict({"optimizer": {}})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "objective.name=vq",
            r"objective\.name must be one of \['authors', 'compressed', 'standard'\], got 'vq'",
        ),
        ("train.amp=fp8", r"train\.amp must be one of \['bf16', 'fp16', 'none'\]"),
        ("optim.lr=-1", r"optim\.lr must be a finite number > 0, got -1"),
        ("optim.betas=[0.9, 1.5]", r"optim\.betas\[1\] must be in \[0, 1\)"),
        ("optim.betas=[0.9]", r"optim\.betas must have 2 entries"),
        ("train.batch_size=0", r"train\.batch_size must be an integer >= 1, got 0"),
        ("train.device=tpu", r"train\.device must be 'auto', 'cpu'"),
        ("model.latent_dim=1", r"model\.latent_dim must be an integer >= 2, got 1"),
        ("train.run_name=a/b", r"train\.run_name must be a plain directory name"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(override, message):
    with pytest.raises((ValueError, TypeError), match=message):
        load_config(None, [override])


def test_malformed_overrides_are_rejected():
    with pytest.raises(ValueError, match=r"must look like key\.sub=value"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ValueError, match=r"must be section\.field"):
        apply_overrides({}, ["epochs=3"])
    with pytest.raises(ValueError, match="'train' is a value, not a section"):
        apply_overrides({"train": 3}, ["train.epochs=3"])


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_to_dict_is_plain_yaml_and_defaults_round_trip():
    d = config_to_dict(RunConfig())
    assert d["optim"]["betas"] == [0.9, 0.999]  # lists, not tuples: safe_dump-able
    assert config_from_dict(d) == RunConfig()


TINY = Path(__file__).parents[2] / "configs" / "digits-tiny.yaml"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("objective.loss_preset=ful", r"^objective\.loss_preset must be one of \['equator', 'full'"),
        ("data.name=mnsit", r"^data\.name must be one of \['celeba64', 'cifar10', 'digits'.*got 'mnsit'"),
        ("data.options.image_size=8", r"^data\.options\.image_size: dataset 'digits' takes no options"),
        ("objective.loss_overrides.alfa=1", r"^objective\.loss_overrides: override must be one of .*got 'alfa'"),
        ("objective.loss_overrides.mu_angle_mean_target=5",
         r"^objective\.loss_overrides\.mu_angle_mean_target must lie in \[-1\.0, 1\.0\]"),
        ("model.channels=[4,4,4,4]",
         r"^model\.channels has 4 stages, so the images' H and W must be divisible by 2\*\*len\(channels\) = 16, "
         r"got \(H, W\) = \(8, 8\)"),
        ("model.extra.norm=layer", r"^model\.extra\.norm must be one of \['batch', 'group'\]"),
        ("schedule.name=warm", r"^schedule\.name must be one of"),
    ],
)
def test_what_a_run_builds_is_checked_before_any_work_naming_the_field(override, message):
    """check_buildable (the CLI and sweeps call it before training) names the config field."""
    from spherevae.training.runs import check_buildable

    with pytest.raises((ValueError, TypeError), match=message):
        check_buildable(load_config(TINY, ["objective.name=compressed", override]))


def test_loss_overrides_of_an_objective_without_a_prior_loss_are_refused():
    # The standard VAE's KLD takes no options: accepted, they would sit in config.yaml unused.
    from spherevae.training.runs import check_buildable

    cfg = load_config(TINY, ["objective.name=standard", "objective.loss_overrides.alpha=1"])
    with pytest.raises(ValueError, match=r"^objective\.loss_overrides \['alpha'\] do nothing with "
                                         r"objective\.name 'standard'"):
        check_buildable(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_build(path):
    from spherevae.training.runs import check_buildable

    check_buildable(load_config(path))


def test_a_folder_of_images_is_not_refused_for_its_unknown_size():
    """A folder dataset's image size comes from its files unless data.options.image_size says."""
    from spherevae.training.runs import check_buildable

    check_buildable(load_config(TINY, ["data.name=folder", "model.channels=[8,8,8,8]"]))
    with pytest.raises(ValueError, match=r"^model\.channels has 4 stages.*\(H, W\) = \(24, 24\)"):
        check_buildable(load_config(TINY, ["data.name=folder", "data.options.image_size=24",
                                           "model.channels=[8,8,8,8]"]))
