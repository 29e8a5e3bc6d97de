"""Oracle for tests/tokenizers.rs: the reference's sentencepiece TextTokenizer path on a tiny
mBART tokenizer that Hugging Face transformers builds from a vocabulary (no download).

Reads a JSON request (path in argv[1]):
  out_dir     where the tokenizer is saved (save_pretrained → tokenizer.json)
  vocab       [[piece, score], ...] in id order (specials, pieces, language codes, <mask>)
  tgt_lang    target language code
  prune_map   path of the pickled {original_id: pruned_id} dict
  texts       sentences to encode as targets
  decode      pruned id sequences (each starting with the decoder start token) to decode;
              the rows of the computed decoder_input_ids are decoded after them
Writes a JSON answer to stdout: raw target ids, pruned labels / decoder_input_ids, the number
of ids missing from the prune map, and the decoded strings two ways: `decoded_slow` as the slow
MBartTokenizer of transformers 4.11 decodes (join pieces, '▁' → ' ', strip, clean-up) and
`decoded_fast` through the fast tokenizer's batch_decode; both then get the German period rule.
"""
import json
import pickle
import sys

import torch
from transformers import MBartTokenizer


def shift_right(ids, pad):
    # mBART: the last non-pad token of each row moves to position 0, the rest one step right.
    out = ids.clone()
    last = (ids.ne(pad).sum(dim=1) - 1).unsqueeze(-1)
    start = ids.gather(1, last).squeeze(-1)
    out[:, 1:] = ids[:, :-1].clone()
    out[:, 0] = start
    return out


def german_rule(texts, lang):
    if "de" not in lang:
        return texts
    return [t[:-1] + " ." if len(t) > 2 and t[-1] == "." and t[-2] != " " else t for t in texts]


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    vocab = [(p, float(s)) for p, s in req["vocab"]]
    tok = MBartTokenizer(vocab=vocab, tgt_lang=req["tgt_lang"])
    for i, (p, _) in enumerate(vocab):
        assert tok.convert_tokens_to_ids(p) == i, (p, i, tok.convert_tokens_to_ids(p))
    tok.save_pretrained(req["out_dir"])
    with open(req["prune_map"], "rb") as f:
        prune = pickle.load(f)
    unk = tok.convert_tokens_to_ids("<unk>")
    pad = tok.convert_tokens_to_ids("<pad>")
    lang = prune[tok.convert_tokens_to_ids(req["tgt_lang"])]

    raw = tok(text_target=req["texts"], padding="longest")["input_ids"]
    unknown = sum(1 for row in raw for i in row if i not in prune)
    pruned = torch.tensor([[prune.get(i, prune[unk]) for i in row] for row in raw])
    labels = torch.where(pruned == lang, torch.full_like(pruned, pad), pruned)
    decoder_input_ids = shift_right(pruned, pad)

    reverse = {new: old for old, new in prune.items()}
    sequences = req["decode"] + decoder_input_ids.tolist()
    originals = [[reverse.get(i, unk) for i in seq[1:]] for seq in sequences]
    slow = []
    for ids in originals:
        pieces = tok.convert_ids_to_tokens(ids, skip_special_tokens=True)
        text = "".join(pieces).replace("\u2581", " ").strip()
        slow.append(tok.clean_up_tokenization(text))
    fast = tok.batch_decode(originals, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    json.dump(
        {
            "raw_input_ids": raw,
            "labels": labels.tolist(),
            "decoder_input_ids": decoder_input_ids.tolist(),
            "unknown": unknown,
            "decoded_slow": german_rule(slow, req["tgt_lang"]),
            "decoded_fast": german_rule(fast, req["tgt_lang"]),
        },
        sys.stdout,
        ensure_ascii=False,
    )


if __name__ == "__main__":
    main()
