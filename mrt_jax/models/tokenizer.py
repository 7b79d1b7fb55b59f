"""Tokenizers for R1-style reasoners: load, render chat prompts, check against the model vocab.

MRT needs two renderings (docs/method.md): the generation prompt a rollout starts from (user turn,
assistant turn, then the thinking opener "<think>\\n"), and the continuation of a partial assistant
message, which is how a meta-prover probe appends its forced termination suffix to a thinking
prefix. Both return token ids, and the continuation always starts with the generation prompt's
text, so a probe sees exactly what the policy saw while it was generating.

Tokenizers without a chat template are rendered with `PLAIN_CHAT_TEMPLATE`.
"""

from __future__ import annotations

import os
from typing import Sequence, Union

import tokenizers
import transformers

from mrt_jax.models.config import ModelConfig

Messages = Sequence[dict[str, str]]

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# The DeepSeek-R1-Distill chat format, reduced to system, user and assistant turns (no tools).
# Like the original it drops everything up to "</think>" from assistant turns and ends the
# generation prompt with "<think>\n" itself.
R1_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}{% endif %}{% endfor %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '" + USER + "' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}"
    "{{ '" + ASSISTANT + "' + m['content'].split('" + THINK_CLOSE + "')[-1] + eos_token }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '" + ASSISTANT + THINK_OPEN + "\\n' }}{% endif %}")

# Fallback for tokenizers without a chat template (base models, sentencepiece demos):
#   [bos] system "\n\n"   "User: " user "\n\n"   "Assistant: " assistant "\n\n"   ...
# and the generation prompt is "Assistant: " (render_prompt then adds the thinking opener).
PLAIN_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\\n\\n' }}"
    "{% else %}{{ 'Assistant: ' + m['content'] + '\\n\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}")

Tokenizer = transformers.PreTrainedTokenizerBase


class TokenizerError(ValueError):
  """A tokenizer is missing, unreadable, or does not fit the model it is used with."""


def load_tokenizer(path: str) -> Tokenizer:
  """Loads a local tokenizer directory with `transformers.AutoTokenizer`.

  Args:
    path: a directory holding `tokenizer.json` (fast tokenizers) or a sentencepiece
      `tokenizer.model`, with the `tokenizer_config.json` naming its class.

  Returns:
    The tokenizer.

  Raises:
    TokenizerError: the directory is missing or transformers cannot read it.
  """
  if not os.path.isdir(path):
    raise TokenizerError(f"tokenizer directory {path!r} does not exist (expected a directory "
                         "with tokenizer.json or tokenizer.model and tokenizer_config.json)")
  try:
    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
  except (OSError, ValueError, TypeError, KeyError) as e:
    raise TokenizerError(f"cannot load a tokenizer from {path!r} (expected tokenizer.json or "
                         f"tokenizer.model and tokenizer_config.json): {e}") from e


def _messages(problem_or_messages: Union[str, Messages], system: str | None) -> list[dict]:
  if isinstance(problem_or_messages, str):
    messages = [{"role": "user", "content": problem_or_messages}]
  else:
    messages = [dict(m) for m in problem_or_messages]
  if system is not None:
    messages.insert(0, {"role": "system", "content": system})
  return messages


def _template(tokenizer: Tokenizer) -> str:
  return tokenizer.chat_template or PLAIN_CHAT_TEMPLATE


def _prompt_text(tokenizer: Tokenizer, messages: list[dict], thinking_opener: str) -> str:
  text = tokenizer.apply_chat_template(messages, chat_template=_template(tokenizer),
                                       add_generation_prompt=True, tokenize=False)
  # R1-Distill templates already end the generation prompt with "<think>\n": never double it.
  return text if text.endswith(thinking_opener) else text + thinking_opener


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
  # The template writes bos itself; added and special tokens in the text map to their ids.
  return tokenizer.encode(text, add_special_tokens=False)


def render_prompt(tokenizer: Tokenizer, problem_or_messages: Union[str, Messages], *,
                  system: str | None = None, thinking_opener: str = "<think>\n") -> list[int]:
  """Token ids of the generation prompt: the chat so far, the assistant header, the opener.

  Args:
    tokenizer: a tokenizer; without a chat template `PLAIN_CHAT_TEMPLATE` is used.
    problem_or_messages: a problem (one user turn) or chat messages ({"role", "content"}).
    system: an optional system prompt, put before the messages.
    thinking_opener: text the assistant turn starts with, appended unless the template's
      generation prompt already ends with it; "" for none.

  Returns:
    The prompt's token ids.
  """
  messages = _messages(problem_or_messages, system)
  return _encode(tokenizer, _prompt_text(tokenizer, messages, thinking_opener))


def render_continuation(tokenizer: Tokenizer, problem_or_messages: Union[str, Messages],
                        partial_assistant_text: str, *, system: str | None = None,
                        thinking_opener: str = "<think>\n") -> list[int]:
  """Token ids of the generation prompt continued by a partial assistant message.

  The assistant message is `thinking_opener + partial_assistant_text` rendered with
  `apply_chat_template(..., continue_final_message=True)`, so `partial_assistant_text` is what
  the model wrote after `render_prompt`'s ids (a thinking prefix, maybe with a probe's
  termination suffix). Templates that rewrite assistant content (R1-Distill's drops the
  thinking once the message contains "</think>") cannot continue such a message; for those the
  text is the generation prompt followed by `partial_assistant_text` verbatim.

  Args:
    tokenizer: a tokenizer; without a chat template `PLAIN_CHAT_TEMPLATE` is used.
    problem_or_messages: a problem (one user turn) or chat messages, without the partial turn.
    partial_assistant_text: the assistant text after the thinking opener.
    system: an optional system prompt, put before the messages.
    thinking_opener: as in `render_prompt`.

  Returns:
    Token ids of the whole text, tokenized at once (merges may cross the prompt boundary).
  """
  messages = _messages(problem_or_messages, system)
  prompt = _prompt_text(tokenizer, messages, thinking_opener)
  partial = {"role": "assistant", "content": thinking_opener + partial_assistant_text}
  try:
    text = tokenizer.apply_chat_template(messages + [partial], chat_template=_template(tokenizer),
                                         continue_final_message=True, tokenize=False)
  except ValueError:  # transformers: "the final message does not appear in the chat".
    text = prompt + partial_assistant_text
  if not text.startswith(prompt):
    raise TokenizerError(f"chat template of {tokenizer.name_or_path!r} renders the continued "
                         f"assistant message as {text!r}, which does not extend the generation "
                         f"prompt {prompt!r}")
  return _encode(tokenizer, text)


def check_vocab(tokenizer: Tokenizer, config: ModelConfig) -> None:
  """Checks that every token id of `tokenizer` indexes the model's embedding table.

  A tokenizer smaller than the vocab is fine: real Qwen checkpoints pad the embedding.

  Raises:
    TokenizerError: `len(tokenizer)` exceeds `config.vocab_size`; names both sizes.
  """
  if len(tokenizer) > config.vocab_size:
    raise TokenizerError(
        f"tokenizer {tokenizer.name_or_path!r} has {len(tokenizer)} tokens but the model's "
        f"vocab_size is {config.vocab_size}: expected len(tokenizer) <= vocab_size")


def build_tiny_tokenizer(out_dir: str, texts: Sequence[str], *, vocab_size: int = 384,
                         chat_template: str | None = R1_CHAT_TEMPLATE) -> Tokenizer:
  """Trains a byte-level BPE tokenizer with the R1-Distill special tokens and saves it.

  For tests and the CPU demo. Like R1-Distill, "<think>" and "</think>" are single added
  tokens that are not special (decoding keeps them); bos, eos, user and assistant are special.

  Args:
    out_dir: directory to `save_pretrained` into (created if missing).
    texts: training texts.
    vocab_size: at most this many tokens in all (merges stop early on little text); at least
      262 = 256 bytes + 6 special tokens.
    chat_template: stored in the tokenizer config; None for a tokenizer without one.

  Returns:
    The saved tokenizer, as `load_tokenizer(out_dir)` returns it.
  """
  think = [tokenizers.AddedToken(t, special=False, normalized=False)
           for t in (THINK_OPEN, THINK_CLOSE)]
  specials = [BOS, EOS, USER, ASSISTANT]
  alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
  minimum = len(alphabet) + len(specials) + len(think)
  if vocab_size < minimum:
    raise ValueError(f"vocab_size={vocab_size} is too small for a byte-level tokenizer: "
                     f"expected at least {minimum}")
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab_size - len(think),
                                           special_tokens=specials, initial_alphabet=alphabet,
                                           show_progress=False)
  tok.train_from_iterator(texts, trainer)
  tok.add_tokens(think)
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS,
                                              pad_token=EOS, chat_template=chat_template)
  fast.save_pretrained(out_dir)
  return load_tokenizer(out_dir)
