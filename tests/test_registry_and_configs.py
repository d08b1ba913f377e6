"""One registry for named things, typed versioned configs pinned to the frozen weights, named configs."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
from helpers import TinyEncoder, tiny_lm

from mmgpt2.apps.captioning import PrefixCaptioner
from mmgpt2.config import Config
from mmgpt2.configs import list_configs, load_named_config
from mmgpt2.errors import ConfigError, Mmgpt2Error, ModelFolderError
from mmgpt2.pipeline import FORMAT_VERSION, FrozenWeightsWarning, PrefixPipeline, load_pipeline
from mmgpt2.registry import COMMANDS, ENCODER_KINDS, MAPPERS, PIPELINES, WORLDS, UnknownName


def saved_captioner(folder, **mapper_kwargs):
    PrefixCaptioner.build(
        TinyEncoder(), tiny_lm(), mapper="mlp", prefix_length=3, **mapper_kwargs
    ).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "registry", [PIPELINES, MAPPERS, ENCODER_KINDS, WORLDS, COMMANDS], ids=lambda r: r.what
)
def test_every_registry_entry_resolves(registry):
    for name in registry:
        assert registry[name] is not None


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownName, match=r"unknown mapper type 'mlpp'; known: mlp, projector, query_guided"):
        MAPPERS["mlpp"]
    assert issubclass(UnknownName, Mmgpt2Error) and issubclass(UnknownName, KeyError)


def test_every_mapper_is_buildable_from_json_in_a_fresh_process():
    configs = {
        "mlp": {},
        "transformer": {"num_heads": 2},
        "query_guided": {"token_dim": 8, "num_heads": 2},
        "projector": {"token_dim": 8, "num_heads": 2},
    }
    code = (
        "import sys, json\n"
        "from mmgpt2.mappers import build_mapper\n"
        "for t, extra in json.loads(sys.argv[1]).items():\n"
        "    print(t, type(build_mapper({'type': t, 'input_dim': 8, 'lm_dim': 16, **extra})).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(configs)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    built = dict(line.split() for line in out.stdout.splitlines())
    assert built == {name: MAPPERS[name].__name__ for name in configs}


def test_config_values_are_checked_when_created():
    from mmgpt2.mappers import MLPMapperConfig

    with pytest.raises(ConfigError, match=r"MLPMapperConfig.prefix_length=-3: must be >= 1"):
        MLPMapperConfig(input_dim=8, lm_dim=8, prefix_length=-3)
    with pytest.raises(ConfigError, match=r"MLPMapperConfig.lm_dim='8': must be int, not str"):
        MLPMapperConfig.from_dict({"input_dim": 8, "lm_dim": "8"})
    assert isinstance(MLPMapperConfig(8, 8), Config)


def test_config_json_records_format_version_and_frozen_fingerprints(tmp_path):
    enc, lm = TinyEncoder(), tiny_lm()
    PrefixCaptioner.build(enc, lm, mapper="mlp", prefix_length=3).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["format"], config["format_version"]) == ("mmgpt2-pipeline", FORMAT_VERSION)
    assert config["encoder_fingerprint"] == enc.weights_fingerprint()
    assert config["lm_fingerprint"] == lm.weights_fingerprint()


def test_an_unknown_top_level_key_is_an_error_naming_the_key_and_the_file(tmp_path):
    saved_captioner(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "prefix_lenght": 4}))
    with pytest.raises(
        ConfigError, match=r"config\.json: PrefixCaptionerConfig: unknown key 'prefix_lenght'"
    ):
        PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(), lm=tiny_lm())


def test_other_frozen_weights_warn_by_default_and_are_refused_when_strict(tmp_path):
    saved_captioner(tmp_path)
    retrained_lm = tiny_lm(seed=1)
    with pytest.warns(
        FrozenWeightsWarning, match=r"trained against lm weights with fingerprint [0-9a-f]{16}"
    ):
        PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(), lm=retrained_lm)
    with pytest.raises(ModelFolderError) as refused:
        PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(), lm=retrained_lm, strict=True)
    saved = json.loads((tmp_path / "config.json").read_text())["lm_fingerprint"]
    assert saved in str(refused.value) and retrained_lm.weights_fingerprint() in str(refused.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same frozen weights: silent
        PrefixCaptioner.from_pretrained(tmp_path, encoder=TinyEncoder(), lm=tiny_lm(), strict=True)


def test_a_folder_in_the_format_before_versions_still_loads(tmp_path):
    saved_captioner(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    old = {k: v for k, v in config.items() if k not in ("format", "format_version", "mmgpt2_version")}
    old = {k: v for k, v in old.items() if not k.endswith("_fingerprint")}
    (tmp_path / "config.json").write_text(json.dumps(old))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fingerprint to compare: no warning either
        model = load_pipeline(tmp_path, encoder=TinyEncoder(), lm=tiny_lm(seed=1))
    assert type(model) is PrefixCaptioner and model.mapper.config.prefix_length == 3


def test_a_zero_shot_pipeline_saves_no_weights_file(tmp_path):
    from mmgpt2.apps.video import DenseVideoCaptioner

    model = DenseVideoCaptioner.build(TinyEncoder(text=True), tiny_lm(), events=2, steps=1)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
    loaded = load_pipeline(tmp_path, encoder=TinyEncoder(text=True), lm=tiny_lm())
    assert type(loaded) is DenseVideoCaptioner and loaded.zerota.events == 2


def test_every_shipped_model_is_in_the_current_format():
    from mmgpt2.paths import list_embedded_models, models_dir

    configs = [models_dir() / n / "config.json" for n in list_embedded_models()]
    pipelines = [
        c.parent for c in configs if c.is_file() and json.loads(c.read_text()).get("type") in PIPELINES
    ]
    assert len(pipelines) >= 5
    for folder in pipelines:
        config = json.loads((folder / "config.json").read_text())
        assert config["format_version"] == FORMAT_VERSION, folder
        assert len(config["encoder_fingerprint"]) == len(config["lm_fingerprint"]) == 16, folder


def test_named_configs_build_untrained_pipelines_of_their_type():
    assert {"clipcap-coco-transformer", "uapt-attend2u", "zerota-activitynet", "medxpt-mimic-nle"} <= set(
        list_configs()
    )
    cap = PrefixPipeline.from_config("clipcap-coco-transformer", TinyEncoder(), tiny_lm())
    named = load_named_config("clipcap-coco-transformer").pipeline["build"]
    assert type(cap) is PrefixCaptioner
    assert (cap.mapper.config.num_layers, cap.mapper.config.prefix_length) == (named["num_layers"], 10)
    with pytest.raises(ConfigError, match="builds a 'medical_explainer', not a 'prefix_captioner'"):
        PrefixCaptioner.from_config("medxpt-mimic-nle", TinyEncoder(), tiny_lm())
    with pytest.raises(ConfigError, match="no named config 'nope'; known: clipcap-coco-transformer"):
        load_named_config("nope")


def test_list_configs_command_lists_them(capsys):
    from helpers import run_cli

    assert run_cli(["list-configs"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in list_configs())
    assert run_cli(["list-configs", "uapt-attend2u"]) == 0
    assert json.loads(capsys.readouterr().out)["pipeline"]["type"] == "personalized_captioner"


def test_the_cli_shows_user_errors_in_one_line_but_bugs_with_their_traceback(tmp_path, capsys, monkeypatch):
    from helpers import run_cli

    assert run_cli(["list-configs", "nope"]) == 2
    assert capsys.readouterr().err.startswith("mmgpt2 list-configs: error: no named config 'nope'")
    monkeypatch.setattr("mmgpt2.configs.load_named_config", lambda name: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        run_cli(["list-configs", "x"])
    monkeypatch.undo()
    with pytest.raises(ConfigError):
        run_cli(["--debug", "list-configs", "nope"])


def test_asset_paths_follow_the_environment_at_call_time(tmp_path, monkeypatch):
    from mmgpt2.paths import assets_dir, list_embedded_models

    shipped = list_embedded_models()
    (tmp_path / "models" / "mine").mkdir(parents=True)
    monkeypatch.setenv("MMGPT2_ASSETS", str(tmp_path))
    assert assets_dir() == tmp_path and list_embedded_models() == ["mine"]
    monkeypatch.delenv("MMGPT2_ASSETS")
    assert list_embedded_models() == shipped
