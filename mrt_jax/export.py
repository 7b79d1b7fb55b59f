"""`python -m mrt_jax.export --config=configs/X.py[:variant] --checkpoint=DIR --out=DIR`

Writes the params of a training checkpoint (`<workdir>/checkpoints`, latest step) as a Hugging
Face directory that `transformers.AutoModelForCausalLM.from_pretrained` loads, with the
tokenizer next to it. The config names the architecture (`model.path`), the optimizer layout
of the checkpoint and the tokenizer.
"""

from __future__ import annotations

import json
import os

from absl import flags, logging

from mrt_jax import config_cli

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "training checkpoint dir or HF dir")
_OUT = flags.DEFINE_string("out", None, "output Hugging Face directory")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                           "dtype of the saved tensors (default: config.model.dtype)")


def export(config, checkpoint: str, out_dir: str, dtype: str | None = None) -> str:
  """Exports `checkpoint` to `out_dir` (config.json, safetensors, tokenizer); returns out_dir."""
  from mrt_jax import models
  from mrt_jax.evaluate import load_checkpoint
  from mrt_jax.models import tokenizer as tokenizer_lib
  model_config, params, name = load_checkpoint(config, checkpoint)
  models.save_hf(model_config, params, out_dir, dtype=dtype or config.model.dtype)
  tokenizer_lib.load_tokenizer(config.model.tokenizer_path).save_pretrained(out_dir)
  return name


def main(config) -> None:
  logging.set_verbosity(logging.WARNING)
  if not _CHECKPOINT.value or not _OUT.value:
    raise SystemExit("mrt_jax.export needs --checkpoint=DIR and --out=DIR")
  name = export(config, _CHECKPOINT.value, _OUT.value, _DTYPE.value)
  print(json.dumps({"checkpoint": os.path.abspath(_CHECKPOINT.value), "step": name,
                    "out": os.path.abspath(_OUT.value)}))


if __name__ == "__main__":
  config_cli.run(main)
