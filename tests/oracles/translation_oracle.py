"""Oracle for tests/translation.rs: the reference's Gloss2Text TranslationNetwork restated with
Hugging Face transformers on a tiny random mBART (no download).

    python translation_oracle.py SPEC.json

SPEC: {"seed": int, "out_dir": path, "config": {MBartConfig kwargs except vocab_size},
       "eos_bias": float, "glosses": [str], "texts": [str], "extra_glosses": [str],
       "missing_gloss": str, "label_smoothing": float,
       "generate": [{"num_beams": int, "max_length": int, "length_penalty": float}]}

Writes into out_dir:
  mbart/            save_pretrained of the model + the tokenizer (tokenizer.json), like mBart_de
  mbart/map_ids.pkl the prune map {original id: pruned id} (specials keep their ids, language
                    codes and <mask> follow from 4, so de_DE -> 6, then the pieces)
  mbart/gloss2ids.pkl       mBART gloss vocabulary (<s> <pad> </s> <unk> <mask> zh_CN de_DE
                    zh_CSL de_DGS, then the lower-cased glosses and extra_glosses)
  mbart/gloss_embeddings.bin torch.save of {gloss: FloatTensor[d_model]} for every vocabulary
                    entry except missing_gloss, plus one entry outside the vocabulary
  reference.ckpt    torch.save({"model_state": ...}) of a second random TranslationNetwork
                    (gloss_embedding + model with tied copies) and one foreign module
  io.safetensors    gloss_table (rows from the file, missing row zero), input_ids,
                    attention_mask, labels, decoder_input_ids, gen<i>.sequences
  results.json      loss, loss_ckpt, decoded (per generate setting), missing rows,
                    transformers_version

The loss is the reference's: inputs_embeds = gloss_embedding(ids) * sqrt(d_model) (eval mode),
XentLoss(pad, smoothing) = KLDivLoss(sum) against the smoothed targets, divided by B.
Decoding: drop the first token, map pruned -> original ids, join pieces as the slow
MBartTokenizer of transformers 4.11 does, clean-up, German final-period rule.
"""

import json
import os
import pickle
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import MBartConfig, MBartForConditionalGeneration, MBartTokenizer

LANGS = ["ar_AR", "cs_CZ", "de_DE", "en_XX", "es_XX", "et_EE", "fi_FI", "fr_XX", "gu_IN",
         "hi_IN", "it_IT", "ja_XX", "kk_KZ", "ko_KR", "lt_LT", "lv_LV", "my_MM", "ne_NP",
         "nl_XX", "ro_RO", "ru_RU", "si_LK", "tr_TR", "vi_VN", "zh_CN"]
GLOSS_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "zh_CN", "de_DE", "zh_CSL", "de_DGS"]


def tokenizer_vocab(texts):
    words = sorted({w for t in texts for w in t.split()})
    chars = sorted({c for t in texts for c in t if not c.isspace()})
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + w, -3.0) for w in words]
    vocab += [("\u2581", -8.0)] + [(c, -12.0) for c in chars]
    vocab += [(l, 0.0) for l in LANGS] + [("<mask>", 0.0)]
    return vocab


def prune_map(vocab):
    ids = {p: i for i, (p, _) in enumerate(vocab)}
    pairs = {i: i for i in range(4)}
    order = [ids[l] for l in LANGS + ["<mask>"]] + list(range(4, len(vocab) - len(LANGS) - 1))
    for new, old in enumerate(order):
        pairs[old] = new + 4
    return pairs


def randomise(model, eos_id, eos_bias):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("shared.weight"):
                p.normal_(0.0, 0.25)
            elif "layer_norm" in name or "layernorm" in name:
                p.uniform_(0.7, 1.3) if name.endswith("weight") else p.uniform_(-0.1, 0.1)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            else:
                p.normal_(0.0, 0.5)
        model.final_logits_bias.normal_(0.0, 0.1)
        model.final_logits_bias[0, eos_id] += eos_bias


def eager(model):
    try:
        model.set_attn_implementation("eager")
    except Exception:  # older transformers
        model.config._attn_implementation = "eager"
    return model


def gloss_batch(glosses, gloss2id):
    """GlossTokenizer_G2T: lower-cased lookup (unknown -> <unk>) + [</s>, de_DGS], padded."""
    rows = [[gloss2id.get(g.lower(), gloss2id["<unk>"]) for g in s.split()]
            + [gloss2id["</s>"], gloss2id["de_DGS"]] for s in glosses]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), gloss2id["<pad>"], dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


def targets(tok, prune, texts):
    """TextTokenizer (sentencepiece): target tokens, pruned; labels and shift-right inputs."""
    raw = tok(text_target=texts, padding="longest")["input_ids"]
    unk = tok.convert_tokens_to_ids("<unk>")
    pad = tok.convert_tokens_to_ids("<pad>")
    lang = prune[tok.convert_tokens_to_ids("de_DE")]
    pruned = torch.tensor([[prune.get(i, prune[unk]) for i in row] for row in raw])
    labels = torch.where(pruned == lang, torch.full_like(pruned, pad), pruned)
    dec = pruned.clone()
    last = (pruned.ne(pad).sum(dim=1) - 1).unsqueeze(-1)
    dec[:, 1:] = pruned[:, :-1].clone()
    dec[:, 0] = pruned.gather(1, last).squeeze(-1)
    return labels, dec


def xent(log_probs, labels, pad, smoothing):
    vocab = log_probs.size(-1)
    lp = log_probs.reshape(-1, vocab)
    t = labels.reshape(-1)
    smooth = torch.full_like(lp, smoothing / (vocab - 2))
    smooth.scatter_(1, t.unsqueeze(1), 1.0 - smoothing)
    smooth[:, pad] = 0
    smooth[t == pad] = 0
    return torch.nn.KLDivLoss(reduction="sum")(lp, smooth)


def network_loss(model, table, ids, mask, labels, dec, pad, smoothing):
    d = model.config.d_model
    embeds = torch.nn.functional.embedding(ids, table, padding_idx=1) * d ** 0.5
    with torch.no_grad():
        logits = model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=dec).logits
    log_probs = torch.log_softmax(logits, -1)
    return (xent(log_probs, labels, pad, smoothing) / ids.shape[0]).item(), embeds


def decode(tok, prune, sequences):
    reverse = {new: old for old, new in prune.items()}
    unk = tok.convert_tokens_to_ids("<unk>")
    out = []
    for seq in sequences.tolist():
        pieces = tok.convert_ids_to_tokens([reverse.get(i, unk) for i in seq[1:]],
                                           skip_special_tokens=True)
        text = tok.clean_up_tokenization("".join(pieces).replace("\u2581", " ").strip())
        if len(text) > 2 and text[-1] == "." and text[-2] != " ":
            text = text[:-1] + " ."
        out.append(text)
    return out


def gloss_table(gloss2id, vectors, d):
    table = torch.zeros(len(gloss2id), d)
    for gloss, i in gloss2id.items():
        if gloss in vectors:
            table[i] = vectors[gloss]
    return table


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    torch.manual_seed(spec["seed"])
    out_dir = spec["out_dir"]
    mbart_dir = os.path.join(out_dir, "mbart")
    vocab = tokenizer_vocab(spec["texts"])
    tok = MBartTokenizer(vocab=vocab, tgt_lang="de_DE")
    tok.save_pretrained(mbart_dir)
    prune = prune_map(vocab)
    with open(os.path.join(mbart_dir, "map_ids.pkl"), "wb") as f:
        pickle.dump(prune, f)

    cfg = MBartConfig(vocab_size=len(prune), **spec["config"])
    model = eager(MBartForConditionalGeneration(cfg)).eval()
    randomise(model, cfg.eos_token_id, spec["eos_bias"])
    model.save_pretrained(mbart_dir)

    glosses = sorted({g.lower() for s in spec["glosses"] for g in s.split()} | set(spec["extra_glosses"]))
    gloss2id = {g: i for i, g in enumerate(GLOSS_SPECIALS + glosses)}
    with open(os.path.join(mbart_dir, "gloss2ids.pkl"), "wb") as f:
        pickle.dump(gloss2id, f)
    d = cfg.d_model
    vectors = {g: torch.randn(d) * 0.3 for g in gloss2id if g != spec["missing_gloss"]}
    vectors["not_in_vocabulary"] = torch.randn(d)
    torch.save(vectors, os.path.join(mbart_dir, "gloss_embeddings.bin"))

    pad = tok.convert_tokens_to_ids("<pad>")
    smoothing = spec["label_smoothing"]
    ids, mask = gloss_batch(spec["glosses"], gloss2id)
    labels, dec = targets(tok, prune, spec["texts"])
    table = gloss_table(gloss2id, vectors, d)
    loss, embeds = network_loss(model, table, ids, mask, labels, dec, pad, smoothing)

    # A reference checkpoint of a second network (load_ckpt), with the tied copies HF keeps.
    model2 = eager(MBartForConditionalGeneration(cfg)).eval()
    randomise(model2, cfg.eos_token_id, spec["eos_bias"])
    table2 = torch.randn(len(gloss2id), d) * 0.3
    state = {"recognition_network.visual_head.fc1.weight": torch.zeros(2, 2),
             "translation_network.gloss_embedding.weight": table2}
    for k, v in model2.state_dict().items():
        state["translation_network.model." + k] = v
    torch.save({"model_state": state, "epoch": 3}, os.path.join(out_dir, "reference.ckpt"))
    loss_ckpt, _ = network_loss(model2, table2, ids, mask, labels, dec, pad, smoothing)

    lang = prune[tok.convert_tokens_to_ids("de_DE")]
    tensors = {"gloss_table": table, "input_ids": ids, "attention_mask": mask, "labels": labels,
               "decoder_input_ids": dec}
    decoded = []
    for i, g in enumerate(spec["generate"]):
        prompt = torch.full((ids.shape[0], 1), lang, dtype=torch.long)
        with torch.no_grad():
            seqs = model.generate(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=prompt,
                                  decoder_start_token_id=lang, num_beams=g["num_beams"],
                                  length_penalty=g["length_penalty"], max_length=g["max_length"],
                                  do_sample=False, early_stopping=False)
        tensors[f"gen{i}.sequences"] = seqs.contiguous()
        decoded.append(decode(tok, prune, seqs))
    save_file(tensors, os.path.join(out_dir, "io.safetensors"))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"loss": loss, "loss_ckpt": loss_ckpt, "decoded": decoded,
                   "missing": [spec["missing_gloss"]],
                   "transformers_version": transformers.__version__}, f, ensure_ascii=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
