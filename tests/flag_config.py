"""Model configs for tests, written the way users write them: flag-style keywords
(``resnet_width=8``, ``vision_model_name=DIR``, ``whisper_pad_seconds=30``, ``use_qlora=True``)
go through the same flag resolution as ``train.py``; other ``ModelConfig`` fields
(``odim``, ``dropout_rate``, ``ctc_weight``, ...) are set directly."""

import argparse
import dataclasses

from espnet.nets.pytorch_backend.model_config import ModelConfig
from espnet.training.cli_args import add_model_args, resolve_model_config


def model_config(odim=ModelConfig.odim, **kwargs) -> ModelConfig:
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    flags = {}
    for action in parser._actions:  # the first flag of a destination (not an alias like --whisper-pad-30s)
        flags.setdefault(action.dest, action)
    argv, fields = [], {}
    for key, value in kwargs.items():
        action = flags.get(key)
        if action is None:
            fields[key] = value
        elif value is None:  # flag not given
            if key in ("vision_encoder", "audio_encoder"):
                fields[key] = None
        elif action.const is not None and action.nargs == 0:  # a switch (store_const)
            if value is True:
                argv.append(action.option_strings[0])
        else:
            argv += [action.option_strings[0], str(value)]
    if "vision_encoder" not in kwargs and "audio_encoder" not in kwargs:
        argv += ["--vision-encoder", "resnet"]
    config = resolve_model_config(parser.parse_args(argv), odim)
    return dataclasses.replace(config, **fields) if fields else config
