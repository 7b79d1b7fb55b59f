"""`python -m mrt_jax.export --config=configs/X.py[:variant] --checkpoint=DIR --out=DIR`

Writes the params of a training checkpoint (`<workdir>/checkpoints`, latest step) as a Hugging
Face directory that `transformers.AutoModelForCausalLM.from_pretrained` loads, with the
tokenizer next to it. The config names the architecture (`model.path`), the mesh the params are
restored onto (`mesh`: each device reads its shards; the optimizer state is never read) and
the tokenizer. On several processes (a TPU pod slice, or `--coordinator_address/--num_processes/
--process_id`) every process runs the same command and process 0 writes the directory.
"""

from __future__ import annotations

import json
import os

from absl import flags, logging

from mrt_jax import config_cli, distributed


def _define_flags() -> None:
  # Defined only when run as a program: `mrt_jax.evaluate` also has a --checkpoint flag, and
  # both modules may be imported into one process (tests, notebooks).
  flags.DEFINE_string("checkpoint", None, "training checkpoint dir or HF dir")
  flags.DEFINE_string("out", None, "output Hugging Face directory")
  flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                    "dtype of the saved tensors (default: config.model.dtype)")


def export(config, checkpoint: str, out_dir: str, dtype: str | None = None) -> str:
  """Exports `checkpoint` to `out_dir` (config.json, safetensors, tokenizer); returns its name.

  Every process of a multi-process run calls this (the params are gathered one at a time);
  process 0 writes.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from mrt_jax import models  # pylint: disable=import-outside-toplevel
  from mrt_jax.models import tokenizer as tokenizer_lib  # pylint: disable=import-outside-toplevel
  from mrt_jax.train.restore import load_checkpoint  # pylint: disable=import-outside-toplevel
  from mrt_jax.train.setup import make_mesh  # pylint: disable=import-outside-toplevel
  mesh = make_mesh(config)
  distributed.log_process(mesh)
  model_config, params, name = load_checkpoint(config, checkpoint, mesh)
  models.save_hf(model_config, params, out_dir, dtype=dtype or config.model.dtype)
  if jax.process_index() == 0:
    tokenizer_lib.load_tokenizer(config.model.tokenizer_path).save_pretrained(out_dir)
  return name


def main(config) -> None:
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  if not f.checkpoint or not f.out:
    raise SystemExit("mrt_jax.export needs --checkpoint=DIR and --out=DIR")
  distributed.initialize()
  import jax  # pylint: disable=import-outside-toplevel
  name = export(config, f.checkpoint, f.out, f.dtype)
  if jax.process_index() == 0:
    print(json.dumps({"checkpoint": os.path.abspath(f.checkpoint), "step": name,
                      "out": os.path.abspath(f.out)}))


if __name__ == "__main__":
  _define_flags()
  config_cli.run(main)
