"""Recipes check themselves, and the CLI's defaults are the recipes' own."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields

import pytest

from neurofm.cli.cmd_train import finetune_cmd, pretrain_cmd
from neurofm.errors import NeuroFMError
from neurofm.train.settings import FinetuneSettings, PretrainSettings

# CLI option name -> settings field, where they differ
RENAMED = {"patch": "patch_size"}


@pytest.mark.parametrize(
    ("cls", "command"), [(FinetuneSettings, finetune_cmd), (PretrainSettings, pretrain_cmd)]
)
def test_cli_defaults_are_the_settings_defaults(cls: type, command: Callable[..., None]) -> None:
    defaults = {f.name: f.default for f in fields(cls)}
    shared = 0
    for name, param in inspect.signature(command).parameters.items():
        field = RENAMED.get(name, name)
        # a typer.Option(...) default, or a plain one under an Annotated shared option
        default = getattr(param.default, "default", param.default)
        if field in defaults and default is not ...:
            assert default == defaults[field], name
            shared += 1
    assert shared >= 9  # the comparison really covered the recipe options


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "frozen"}, "unknown mode 'frozen'"),
        ({"head": "transformer"}, "unknown head"),
        ({"pool": "sum"}, "unknown pool"),
        ({"augment": "extreme"}, "unknown augment 'extreme'"),
        ({"preset": "huge"}, "unknown preset"),
        ({"task": "tumour"}, "unknown task"),
        ({"lr": 0.0}, "--lr must be positive"),
        ({"shots": 0}, "--shots must be positive"),
        ({"val_fraction": 1.0}, "val_fraction must be in"),
        ({"patience": -1}, "--patience must be at least 0"),
        ({"steps": -5}, "--steps must be at least 0"),
    ],
)
def test_finetune_settings_refuse_bad_values(change: dict, message: str) -> None:
    with pytest.raises(NeuroFMError, match=message):
        FinetuneSettings(**change)


def test_pretrain_settings_refuse_bad_values() -> None:
    with pytest.raises(NeuroFMError, match="unknown objective 'jigsaw'"):
        PretrainSettings(objective="jigsaw")
    with pytest.raises(NeuroFMError, match="--patch 40 must be a multiple of 16"):
        PretrainSettings(patch_size=40)
    with pytest.raises(NeuroFMError, match="--patch 16 must be a multiple of 16 and at least 32"):
        PretrainSettings(patch_size=16)
    assert PretrainSettings(patch_size=48).patch_size == 48
    for cls in (PretrainSettings, FinetuneSettings):
        with pytest.raises(NeuroFMError, match="unknown loader 'fibres'"):
            cls(loader="fibres")  # type: ignore[arg-type]
        assert cls(loader="threads").loader == "threads"
    assert FinetuneSettings(steps=0, shots=4).steps == 0  # zero steps: keep what was loaded


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": -1.0}, "lr must be positive"),
        ({"grad_clip": 0.0}, "grad_clip must be positive"),
        ({"monitor_mode": "best"}, "monitor_mode must be min or max"),
        ({"eval_every": 5}, "eval_every needs a monitor"),
        ({"steps": float("nan")}, "steps must be at least 0"),
    ],
)
def test_loop_config_refuses_bad_values(change: dict, message: str) -> None:
    from neurofm.train.loop import LoopConfig

    with pytest.raises(NeuroFMError, match=message):
        LoopConfig(**change)
    assert LoopConfig(eval_every=5, monitor="val_loss").eval_every == 5
