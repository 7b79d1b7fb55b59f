"""Tokenizer helper: loading fast and sentencepiece directories, R1 prompt rendering, vocab check."""

import io
import json

import pytest
import sentencepiece

from mrt_jax.models import tokenizer as tk
from mrt_jax.models.config import config_from_hf_dict
from hf_fixtures import hf_config

TEXTS = ["What is 2+3? Okay, so I need to add 2 and 3.\n\nWait, let me check: 2+3 = 5.",
         "The final answer is 5. But wait, is there another way?"] * 8
PROBLEM = "What is 2+3?"
SPM_WORDS = "User Assistant think alpha beta gamma delta epsilon zeta eta theta iota".split()


@pytest.fixture(scope="module")
def r1_tok(tmp_path_factory):
  return tk.build_tiny_tokenizer(str(tmp_path_factory.mktemp("r1")), TEXTS)


@pytest.fixture()
def plain_tok(r1_tok):
  tok = tk.load_tokenizer(r1_tok.name_or_path)
  tok.chat_template = None
  return tok


def _ids(tok, *pieces):
  """Expected ids: strings in the tokenizer's added vocab are one id, other text is encoded."""
  vocab = tok.get_added_vocab()
  out = []
  for p in pieces:
    out += [vocab[p]] if p in vocab else tok.encode(p, add_special_tokens=False)
  return out


def test_tiny_tokenizer_has_r1_tokens_and_keeps_think_on_decode(r1_tok):
  assert len(r1_tok) <= 384
  assert r1_tok.bos_token == tk.BOS and r1_tok.eos_token == tk.EOS
  ids = r1_tok.encode("<think>x</think>", add_special_tokens=False)
  assert r1_tok.decode(ids, skip_special_tokens=True) == "<think>x</think>"
  assert r1_tok.chat_template == tk.R1_CHAT_TEMPLATE


def test_generation_prompt_r1(r1_tok):
  ids = tk.render_prompt(r1_tok, PROBLEM)
  assert r1_tok.decode(ids) == "<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜><think>\n"
  assert ids == _ids(r1_tok, tk.BOS, tk.USER, PROBLEM, tk.ASSISTANT, tk.THINK_OPEN, "\n")
  assert ids.count(r1_tok.convert_tokens_to_ids(tk.THINK_OPEN)) == 1  # the template adds it once


def test_generation_prompt_r1_system_and_history(r1_tok):
  messages = [{"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "<think>\nhm</think>\n\nHello"},
              {"role": "user", "content": PROBLEM}]
  text = r1_tok.decode(tk.render_prompt(r1_tok, messages, system="Be brief."))
  assert text == ("<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>\n\nHello"
                  "<｜end▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜><think>\n")


def test_continuation_r1(r1_tok):
  ids = tk.render_continuation(r1_tok, PROBLEM, "Okay, so 5.")
  assert r1_tok.decode(ids) == ("<｜begin▁of▁sentence｜><｜User｜>What is 2+3?<｜Assistant｜>"
                                "<think>\nOkay, so 5.")
  assert ids == _ids(r1_tok, tk.BOS, tk.USER, PROBLEM, tk.ASSISTANT, tk.THINK_OPEN,
                     "\nOkay, so 5.")


def test_continuation_r1_with_termination_suffix_keeps_the_thinking(r1_tok):
  # R1's template drops assistant text up to "</think>"; a probe must still see its prefix.
  partial = "Okay, so 5.\n\nTime is up.</think>\n\nThe final answer is"
  ids = tk.render_continuation(r1_tok, PROBLEM, partial)
  assert ids == _ids(r1_tok, tk.BOS, tk.USER, PROBLEM, tk.ASSISTANT, tk.THINK_OPEN,
                     "\nOkay, so 5.\n\nTime is up.", tk.THINK_CLOSE, "\n\nThe final answer is")


def test_continuation_extends_the_generation_prompt(r1_tok):
  prompt = tk.render_prompt(r1_tok, PROBLEM)
  assert tk.render_continuation(r1_tok, PROBLEM, "")[:len(prompt)] == prompt


def test_template_without_think_gets_the_opener_once(r1_tok, plain_tok):
  plain_tok.chat_template = tk.R1_CHAT_TEMPLATE.replace(tk.THINK_OPEN + "\\n", "")
  assert tk.render_prompt(plain_tok, PROBLEM) == tk.render_prompt(r1_tok, PROBLEM)
  assert (tk.render_continuation(plain_tok, PROBLEM, "So 5.")
          == tk.render_continuation(r1_tok, PROBLEM, "So 5."))


def test_plain_fallback_without_chat_template(plain_tok):
  text = plain_tok.decode(tk.render_prompt(plain_tok, PROBLEM, system="Be brief."))
  assert text == "<｜begin▁of▁sentence｜>Be brief.\n\nUser: What is 2+3?\n\nAssistant: <think>\n"
  cont = tk.render_continuation(plain_tok, PROBLEM, "So 5.</think> 5", thinking_opener="")
  assert plain_tok.decode(cont) == "<｜begin▁of▁sentence｜>User: What is 2+3?\n\nAssistant: So 5.</think> 5"


@pytest.mark.parametrize("cls,model_type,vocab_size", [("LlamaTokenizer", "bpe", 300),
                                                       ("T5Tokenizer", "unigram", 30)])
def test_loads_sentencepiece_directory(tmp_path, cls, model_type, vocab_size):
  text = [" ".join(SPM_WORDS[(i * j + i) % len(SPM_WORDS)] for j in range(8)) + ":"
          for i in range(300)]
  model = io.BytesIO()
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(text), model_writer=model, vocab_size=vocab_size,
      model_type=model_type, byte_fallback=model_type == "bpe", minloglevel=2)
  (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls}))
  tok = tk.load_tokenizer(str(tmp_path))
  reference = sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())
  # Same pieces at the same ids (T5 appends its 100 <extra_id_*> tokens after them).
  pieces = [reference.id_to_piece(i) for i in range(vocab_size)]
  assert tok.convert_ids_to_tokens(list(range(vocab_size))) == pieces
  sample = "User: alpha beta Assistant: think"
  assert tok.encode(sample, add_special_tokens=False) == reference.encode(sample)
  plain = f"{tok.bos_token or ''}User: alpha beta\n\nAssistant: <think>\n"  # no chat template
  assert tk.render_prompt(tok, "alpha beta") == tok.encode(plain, add_special_tokens=False)


def test_missing_directory_is_named(tmp_path):
  missing = str(tmp_path / "nope")
  with pytest.raises(tk.TokenizerError, match="nope.*does not exist"):
    tk.load_tokenizer(missing)


def test_unreadable_directory_is_named(tmp_path):
  (tmp_path / "tokenizer.json").write_text("{not json")
  (tmp_path / "tokenizer_config.json").write_text("{}")
  with pytest.raises(tk.TokenizerError, match=f"cannot load a tokenizer from '{tmp_path}'"):
    tk.load_tokenizer(str(tmp_path))


def test_check_vocab(r1_tok):
  n = len(r1_tok)
  model = {**hf_config("qwen2").to_dict(), "architectures": ["Qwen2ForCausalLM"]}
  tk.check_vocab(r1_tok, config_from_hf_dict({**model, "vocab_size": n}))
  tk.check_vocab(r1_tok, config_from_hf_dict({**model, "vocab_size": n + 64}))  # padded: fine
  with pytest.raises(tk.TokenizerError, match=f"has {n} tokens.*vocab_size is {n - 1}"):
    tk.check_vocab(r1_tok, config_from_hf_dict({**model, "vocab_size": n - 1}))


def test_tiny_tokenizer_rejects_a_vocab_below_the_byte_alphabet(tmp_path):
  with pytest.raises(ValueError, match="vocab_size=100.*at least 262"):
    tk.build_tiny_tokenizer(str(tmp_path), TEXTS, vocab_size=100)
