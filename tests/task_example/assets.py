"""The sum task's own tokenizer and a tiny random Qwen2 checkpoint, built with Hugging Face
libraries as a user would (nothing from mrt_jax), for the tests."""

import json
import os

import tokenizers
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
EOS = "<|endoftext|>"


def build_tokenizer(out_dir: str, *, think_special: bool = False):
  """A byte-level BPE over the task's text; "<think>"/"</think>" are added tokens, special
  only with `think_special` (which decoding then drops)."""
  with open(os.path.join(HERE, "train.jsonl")) as f:
    corpus = [json.loads(line)["question"] for line in f]
  corpus += ["User: Assistant: <think>\nI add them.</think> 12", "Time is up. final answer"] * 4
  tok = tokenizers.Tokenizer(tokenizers.models.BPE())
  tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = tokenizers.decoders.ByteLevel()
  trainer = tokenizers.trainers.BpeTrainer(
      vocab_size=300, special_tokens=[EOS],
      initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator(corpus, trainer)
  tok.add_tokens([tokenizers.AddedToken(t, special=think_special, normalized=False)
                  for t in ("<think>", "</think>")])
  fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS,
                                              pad_token=EOS)
  fast.save_pretrained(out_dir)
  return transformers.AutoTokenizer.from_pretrained(out_dir)


def build_model(out_dir: str, tokenizer, seed: int = 0) -> None:
  """A 2-layer width-32 Qwen2 with random weights, saved with save_pretrained."""
  torch.manual_seed(seed)
  config = transformers.Qwen2Config(
      vocab_size=-(-len(tokenizer) // 8) * 8, hidden_size=32, intermediate_size=64,
      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
      max_position_embeddings=512, tie_word_embeddings=True,
      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
  transformers.AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
