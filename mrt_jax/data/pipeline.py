"""Prompt batches through grain: render, drop prompts that are too long, shuffle, repeat, batch.

Records are rendered once, up front, with the tokenizer's chat template and the thinking opener
(`render_prompt`, the same rendering the meta-prover's continuations extend), so the count of
prompts longer than `max_prompt_len` is exact before training starts. The kept examples go
through a grain `MapDataset`: a seeded global shuffle, reshuffled every epoch, repeated, and
batched across epoch boundaries. Its iterator's `get_state()` is a small JSON-ready dict;
`set_state()` on a fresh iterator of the same pipeline continues exactly where it was taken.

Each batch is a list of `batch_size // shard_count` examples (the process's slice of the
global batch); the launch loop repeats each prompt G times. An example is a dict:
  "prompt_ids": int32 [P] token ids; "problem": str; "answer": the gold answer as the file
  holds it (a string, a number, ...); "record": what verifiers receive
  (`mrt_jax.task.verifier_record`: the source record with "problem", "answer" and "id");
  "index": its row in the source.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import grain
import numpy as np

from mrt_jax.data.sources import DataError, Record, load_records
from mrt_jax.data.split import split_records
from mrt_jax.models.tokenizer import Tokenizer, render_prompt
from mrt_jax.task import verifier_record

Example = dict[str, Any]

# The instruction R1-Distill models were evaluated with: append it for math datasets
# (`prompt_template=MATH_PROMPT_TEMPLATE`). "{problem}" is replaced verbatim (no str.format, so
# braces in LaTeX problems are safe).
# Examples are already in memory: one prefetch thread is plenty, while grain's default (16
# threads, 500 elements ahead) costs seconds per iterator on a small CPU machine.
_READ_OPTIONS = grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)

MATH_PROMPT_TEMPLATE = ("{problem}\nPlease reason step by step, and put your final answer "
                        "within \\boxed{}.")


@dataclasses.dataclass(frozen=True)
class PromptSet:
  """Rendered prompts of a dataset.

  Attributes:
    examples: the kept examples (see the module docstring), in source order.
    num_records: records read.
    too_long: source indices of the records whose prompt exceeded `max_prompt_len`.
  """
  examples: list[Example]
  num_records: int
  too_long: tuple[int, ...]

  @property
  def num_too_long(self) -> int:
    return len(self.too_long)


def render_problem(tokenizer: Tokenizer, problem: str, *, prompt_template: str = "{problem}",
                   system: str | None = None, thinking_opener: str = "<think>\n") -> list[int]:
  """The generation prompt of one problem: the template's user turn, the system prompt and the
  thinking opener (`render_prompt`). Training, evaluation and warm starts all render with it."""
  return render_prompt(tokenizer, prompt_template.replace("{problem}", problem), system=system,
                       thinking_opener=thinking_opener)


def render_prompts(records: Sequence[Record], tokenizer: Tokenizer, *, max_prompt_len: int,
                   problem_field: str = "problem", answer_field: str = "answer",
                   prompt_template: str = "{problem}", system: str | None = None,
                   source: str = "records", thinking_opener: str = "<think>\n") -> PromptSet:
  """Renders every record's prompt and skips (and counts) those longer than `max_prompt_len`.

  Args:
    records: problem records holding `problem_field` and `answer_field`.
    tokenizer: renders with its chat template (or `PLAIN_CHAT_TEMPLATE`) and the "<think>\\n"
      opener.
    max_prompt_len: longest prompt kept, in tokens.
    problem_field: field holding the problem text.
    answer_field: field holding the reference answer (kept as the file's type).
    prompt_template: user turn, with "{problem}" replaced by the problem text.
    system: optional system prompt.
    source: name of the data in error messages (the file path).
    thinking_opener: text the assistant turn starts with (`render_prompt`).

  Returns:
    The `PromptSet`.

  Raises:
    DataError: a problem is not a string, or no prompt fits.
  """
  examples, too_long = [], []
  for i, record in enumerate(records):
    problem = record[problem_field]
    if not isinstance(problem, str):
      raise DataError(f"{source}: record {i} field {problem_field!r} is a "
                      f"{type(problem).__name__}; expected the problem text (a string)")
    ids = render_problem(tokenizer, problem, prompt_template=prompt_template, system=system,
                         thinking_opener=thinking_opener)
    if len(ids) > max_prompt_len:
      too_long.append(i)
      continue
    examples.append({"prompt_ids": np.asarray(ids, np.int32), "problem": problem,
                     "answer": record[answer_field],
                     "record": verifier_record(record, i, problem_field, answer_field),
                     "index": i})
  if not examples:
    raise DataError(f"{source}: all {len(records)} prompts are longer than max_prompt_len="
                    f"{max_prompt_len} tokens; expected at least one that fits")
  return PromptSet(examples, len(records), tuple(too_long))


def batch_dataset(prompts: PromptSet, *, batch_size: int, seed: int, shuffle: bool = True,
                  num_epochs: int | None = None, shard_index: int = 0,
                  shard_count: int = 1) -> grain.IterDataset:
  """The grain dataset of prompt batches.

  Args:
    prompts: rendered prompts.
    batch_size: prompts per global batch (the config's global_batch_prompts).
    seed: shuffle seed; the same on every process, so shards split one global order.
    shuffle: shuffle globally, with a new order every epoch.
    num_epochs: passes over the data; None repeats forever.
    shard_index: this process's slice of each global batch.
    shard_count: number of slices; divides `batch_size`.

  Returns:
    An `IterDataset` of lists of examples; a remainder smaller than a batch is dropped.

  Raises:
    ValueError: a shard or batch setting is invalid, or the data holds no full batch.
  """
  if batch_size < 1 or shard_count < 1 or batch_size % shard_count:
    raise ValueError(f"batch_size={batch_size} must be >= 1 and divisible by shard_count="
                     f"{shard_count}")
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"shard_index={shard_index}: expected 0 <= shard_index < {shard_count}")
  if num_epochs is not None and len(prompts.examples) * num_epochs < batch_size:
    raise ValueError(f"{len(prompts.examples)} prompts x {num_epochs} epochs hold no full batch "
                     f"of {batch_size}; expected at least batch_size prompts")
  ds = grain.MapDataset.source(prompts.examples)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs).batch(batch_size, drop_remainder=True, batch_fn=list)
  per_shard = batch_size // shard_count
  lo = shard_index * per_shard
  return ds.map(lambda batch: batch[lo:lo + per_shard]).to_iter_dataset(_READ_OPTIONS)


def prompt_pipeline(path: str, tokenizer: Tokenizer, *, batch_size: int, max_prompt_len: int,
                    seed: int, problem_field: str = "problem", answer_field: str = "answer",
                    prompt_template: str = "{problem}", system: str | None = None,
                    shuffle: bool = True, num_epochs: int | None = None, split: str = "train",
                    shard_index: int = 0, shard_count: int = 1,
                    thinking_opener: str = "<think>\n") -> tuple[grain.IterDataset, PromptSet]:
  """Loads a local dataset and returns its batch dataset and rendered prompts.

  Iterate with `it = iter(dataset)`; checkpoint `it.get_state()` and resume with
  `it = iter(dataset); it.set_state(state)`. Arguments are those of `load_records`,
  `render_prompts` and `batch_dataset`.

  Returns:
    (the `batch_dataset`, the `PromptSet` with the too-long count).
  """
  records = load_records(path, problem_field=problem_field, answer_field=answer_field,
                         split=split)
  prompts = render_prompts(records, tokenizer, max_prompt_len=max_prompt_len,
                           problem_field=problem_field, answer_field=answer_field,
                           prompt_template=prompt_template, system=system, source=path,
                           thinking_opener=thinking_opener)
  dataset = batch_dataset(prompts, batch_size=batch_size, seed=seed, shuffle=shuffle,
                          num_epochs=num_epochs, shard_index=shard_index, shard_count=shard_count)
  return dataset, prompts


def training_records(config) -> tuple[list[Record], str]:
  """The records a run trains on, and their source's name.

  With no evaluation file (`eval.data_path` empty) the held-out side of
  `split.split_records(data.path, eval.holdout_fraction)` is left out, so evaluation never
  scores a problem training saw.
  """
  data = config.data
  records = load_records(data.path, problem_field=data.problem_field,
                         answer_field=data.answer_field, split=data.split)
  if config.eval.data_path:
    return records, data.path
  held = split_records(records, problem_field=data.problem_field,
                       fraction=float(config.eval.holdout_fraction), source=data.path)
  return held.train, held.description.replace("held-out split", "training side of the split")


def pipeline_from_config(config, tokenizer: Tokenizer, *, shard_index: int = 0,
                         shard_count: int = 1) -> tuple[grain.IterDataset, PromptSet]:
  """`prompt_pipeline` from an experiment config (`configs/*.py`), over `training_records`.

  Reads `data.path`, `data.problem_field`, `data.answer_field`, `data.max_prompt_len`,
  `data.thinking_opener`, `data.prompt_template`, `data.system`, `data.shuffle`,
  `data.num_epochs`, `data.split`, `eval.data_path`, `eval.holdout_fraction`,
  `train.global_batch_prompts` and `seed` (all declared in `config_defaults.base`).
  """
  data = config.data
  records, source = training_records(config)
  prompts = render_prompts(records, tokenizer, max_prompt_len=data.max_prompt_len,
                           problem_field=data.problem_field, answer_field=data.answer_field,
                           prompt_template=data.prompt_template, system=data.system,
                           source=source, thinking_opener=data.thinking_opener)
  dataset = batch_dataset(prompts, batch_size=config.train.global_batch_prompts,
                          seed=config.seed, shuffle=data.shuffle,
                          num_epochs=data.num_epochs, shard_index=shard_index,
                          shard_count=shard_count)
  return dataset, prompts
