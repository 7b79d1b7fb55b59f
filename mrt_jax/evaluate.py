"""Evaluate a checkpoint: pass@k, maj@k, budget-forced J(c), normalized regret, extrapolation.

  python -m mrt_jax.evaluate --config=configs/X.py[:variant] --checkpoint=DIR [--out=DIR] \\
      [--config.eval.num_samples=4 ...]
  python -m mrt_jax.evaluate --compare=base/eval.json,mrt/eval.json [--out=DIR]

DIR is a Hugging Face directory (config.json + safetensors) or a training checkpoint directory
(`<workdir>/checkpoints`, Orbax; its latest step is evaluated, with the architecture read from
config.model.path). Outputs go to --out (default `<workdir>/eval/<checkpoint name>`); the last
line printed is one JSON object holding at least `pass@1` and `normalized_regret`. With
--compare, the plots of several eval.json files are drawn together (default out: ./eval_compare).
The work itself is `mrt_jax.evaluation.runner.evaluate`, which the training loop calls too.

Only the params are restored, straight onto the config's mesh (`config.mesh`) in the sampling
layout, and the evaluation samples on that mesh. On several processes (a TPU pod slice, or
`--coordinator_address/--num_processes/--process_id`, as for `mrt_jax.launch`) every process
runs the same command and process 0 writes the outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from typing import Sequence

import jax
from absl import app, flags, logging

from mrt_jax import config_cli, distributed, models, storage
from mrt_jax.evaluation import report
from mrt_jax.evaluation.runner import evaluate, plot_records
from mrt_jax.models.sharding import SAMPLE_RULES
from mrt_jax.sampling import Sampler
from mrt_jax.train.restore import load_checkpoint
from mrt_jax.train.setup import make_mesh

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Hugging Face dir or training checkpoint "
                                  "dir (<workdir>/checkpoints) to evaluate")
_OUT = flags.DEFINE_string("out", None, "output dir (default <workdir>/eval/<checkpoint name>)")
_COMPARE = flags.DEFINE_list("compare", None, "eval.json files to plot together (no evaluation)")


def compare(eval_paths: Sequence[str], out_dir: str) -> dict[str, str]:
  """Plots several eval.json files together, each labelled by its "name" (the checkpoint's).

  Returns:
    Plot name -> PNG path.
  """
  records = {}
  for path in eval_paths:
    if not storage.exists(path):
      raise FileNotFoundError(f"--compare: {path!r} does not exist; expected an eval.json")
    with storage.open_file(path) as f:
      record = json.load(f)
    if "budget_forcing" not in record:
      raise ValueError(f"--compare: {path!r} has no budget_forcing curves; expected an eval.json "
                       "written by mrt_jax.evaluate")
    label = record.get("name") or os.path.basename(os.path.dirname(storage.absolute(path)))
    while label in records:  # Two checkpoints may share a directory name.
      label += "'"
    records[label] = record
  return plot_records(records, out_dir)


def evaluate_checkpoint(config, checkpoint: str, out_dir: str | None = None) -> tuple[str, dict]:
  """Evaluates `checkpoint` on the config's mesh; returns (out_dir, the eval.json record).

  Every process of a multi-process run calls this; process 0 writes into `out_dir` (default
  `<workdir>/eval/<checkpoint name>`), the others into a scratch directory that is deleted.
  """
  mesh = make_mesh(config)
  distributed.log_process(mesh)
  model_config, params, name = load_checkpoint(config, checkpoint, mesh, SAMPLE_RULES)
  tokenizer = models.load_tokenizer(config.model.tokenizer_path)
  models.check_vocab(tokenizer, model_config)
  out_dir = out_dir or os.path.join(config.workdir, "eval", name)
  sampler = Sampler(model_config, mesh=mesh, rules=SAMPLE_RULES)
  with contextlib.ExitStack() as scratch:
    target = out_dir
    if jax.process_index() != 0:
      target = scratch.enter_context(tempfile.TemporaryDirectory())
    record = evaluate(config, params, model_config, tokenizer, target,
                      checkpoint=storage.absolute(checkpoint), name=name, sampler=sampler)
  return out_dir, record


def main(config) -> None:
  logging.set_verbosity(logging.WARNING)  # As launch: no Orbax INFO line per restore phase.
  if not _CHECKPOINT.value:
    raise app.UsageError("--checkpoint=DIR is required (or --compare=a/eval.json,b/eval.json)")
  distributed.initialize()
  out_dir, record = evaluate_checkpoint(config, _CHECKPOINT.value, _OUT.value)
  if jax.process_index() == 0:
    print(f"evaluated on {record['dataset']}: {record['num_problems']} problems x "
          f"{record['num_samples']} samples each", flush=True)
    print(f"wrote {out_dir}/eval.json, samples.jsonl and plots", flush=True)
    print(report.summary_line(record), flush=True)


def _compare_main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  out_dir = _OUT.value or "eval_compare"
  print(json.dumps(compare(_COMPARE.value, out_dir)))


if __name__ == "__main__":
  if any(a.startswith(("--compare", "-compare")) for a in sys.argv[1:]):
    app.run(_compare_main)
  else:
    config_cli.run(main)
