"""Write tests/fixtures/tiny_bert: a tiny random BERT saved by Hugging Face transformers, with
the reference library's outputs, so that the tests need neither torch nor the network.

Run it in a throwaway environment, never in jaxdl's own (torch's CPU build is enough):

    python3 -m venv /tmp/hfvenv
    /tmp/hfvenv/bin/pip install torch==2.13.0 transformers
    /tmp/hfvenv/bin/python scripts/make_tiny_bert_fixture.py

Made with torch 2.13.0, transformers 5.24.0 and tokenizers 0.23.3. The WordPiece vocabulary is
trained on the docstrings of a few standard-library modules; the model is BertForMaskedLM
(checkpoint names carry the 'bert.' prefix, and the masked-LM head comes along) with every
parameter drawn at random, biases and LayerNorm weights included, so that a wrongly mapped
array changes the outputs.
"""

import inspect
import json
import string
import textwrap
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "tiny_bert"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SENTENCES = [
    "Return a copy of the string with leading whitespace removed.",
    "The quick brown fox!",
    "Tokenizers split text into WORDS and word pieces: über, naïve, 42.",
    "",
]
MAX_LENGTH = 24  # The longest sentence is cut: truncation is part of the reference.


def corpus() -> list[str]:
    modules = (json, string, textwrap, inspect, Path)
    docs = [inspect.getdoc(module) or "" for module in modules]
    for module in modules:
        docs += [inspect.getdoc(member) or "" for _, member in inspect.getmembers(module)]
    return [doc for doc in docs if doc]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    trainer = tokenizers.BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(corpus(), vocab_size=200, min_frequency=2, special_tokens=SPECIALS)
    vocab = trainer.get_vocab()
    tokenizer = transformers.BertTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.save_pretrained(OUT)

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=48,
        type_vocab_size=2,
        initializer_range=0.2,
    )
    model = transformers.BertForMaskedLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(OUT)

    batch = tokenizer(
        SENTENCES, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
    )
    short = tokenizer(SENTENCES, padding=True, truncation=True, max_length=8, return_tensors="pt")
    typed = batch["token_type_ids"].clone()
    typed[:, typed.shape[1] // 2 :] = 1  # Token type 1 is never produced by single sentences.
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        typed_out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=typed,
            output_hidden_states=True,
        )
    arrays = {key: value.numpy().astype(np.int32) for key, value in batch.items()}
    arrays.update({f"short_{key}": value.numpy().astype(np.int32) for key, value in short.items()})
    arrays["hidden"] = out.hidden_states[-1].numpy()
    arrays["mlm_logits"] = out.logits[:1].numpy()  # One sentence: logits are large.
    arrays["typed_token_type_ids"] = typed.numpy().astype(np.int32)
    arrays["typed_hidden"] = typed_out.hidden_states[-1].numpy()
    np.savez(OUT / "reference.npz", **arrays)
    (OUT / "reference.json").write_text(
        json.dumps(
            {"sentences": SENTENCES, "max_length": MAX_LENGTH, "short_max_length": 8}, indent=1
        )
        + "\n"
    )
    sizes = {path.name: path.stat().st_size for path in sorted(OUT.iterdir())}
    print(json.dumps(sizes), sum(sizes.values()), "bytes")


if __name__ == "__main__":
    main()
