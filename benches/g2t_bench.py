#!/usr/bin/env python3
"""Python baseline for `slt bench g2t`: a Gloss2Text training step and batched beam search with
HF transformers (eager PyTorch, no compilation) on exactly the model and batches slt uses.

`slt bench g2t` exports its network to a folder: `model/` (HF `config.json` +
`model.safetensors`, written by slt's `save_pretrained`), `inputs.safetensors` (the gloss
embedding table, one tokenised training batch and the tokenised generation batches) and
`settings.json` (optimizer, label smoothing, beam settings, special ids). This script loads them
and answers one command per stdin line with one JSON line:

  setup DIR    load the folder (fresh model and optimizer)
  step         one training step: zero_grad(set_to_none) + gloss embedding x scale + mBART forward
               (train mode, dropout on) + the reference's label-smoothed KL loss / B + backward +
               torch.optim.Adam step (coupled weight decay, as the reference)
  generate K   beam search on generation batch K (eval mode, no grad; decoder starts with the
               target-language id, max_length / num_beams / length_penalty from the settings)

Rust and Python alternate command by command, so on a shared machine both see the same load.
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file
from transformers import MBartForConditionalGeneration


def label_smoothed_loss(logits, labels, pad_id, smoothing):
    """The reference's XentLoss with smoothing: KL(sum) between smoothed targets (smoothing/(V-2)
    off the label, pad column and pad rows zero) and log_softmax(logits), divided by B."""
    b, t, v = logits.shape
    log_probs = F.log_softmax(logits, dim=-1).reshape(-1, v)
    flat = labels.reshape(-1)
    target = torch.full_like(log_probs, smoothing / (v - 2))
    target.scatter_(1, flat.unsqueeze(1), 1.0 - smoothing)
    target[:, pad_id] = 0.0
    target.masked_fill_((flat == pad_id).unsqueeze(1), 0.0)
    return F.kl_div(log_probs, target, reduction="sum") / b


class Bench:
    def __init__(self, folder, attn):
        with open(os.path.join(folder, "settings.json")) as f:
            self.settings = json.load(f)
        self.model = MBartForConditionalGeneration.from_pretrained(
            os.path.join(folder, "model"), attn_implementation=attn)
        tensors = load_file(os.path.join(folder, "inputs.safetensors"))
        self.gloss_embedding = torch.nn.Parameter(tensors.pop("gloss_embedding"))
        self.tensors = tensors
        s = self.settings
        self.optimizer = torch.optim.Adam(
            list(self.model.parameters()) + [self.gloss_embedding], lr=s["lr"],
            betas=tuple(s["betas"]), eps=s["eps"], weight_decay=s["weight_decay"])
        self.loss = None

    def embed(self, ids):
        s = self.settings
        return F.embedding(ids, self.gloss_embedding, padding_idx=s["gloss_pad_id"]) * s["input_embed_scale"]

    def step(self):
        s, t = self.settings, self.tensors
        self.model.train()
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(inputs_embeds=self.embed(t["train.gloss_ids"]),
                         attention_mask=t["train.gloss_mask"],
                         decoder_input_ids=t["train.decoder_input_ids"])
        loss = label_smoothed_loss(out.logits, t["train.labels"], s["text_pad_id"], s["label_smoothing"])
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        self.optimizer.step()
        end = time.perf_counter()
        self.loss = float(loss.detach())
        return {"time_s": end - start, "forward_s": forward - start, "backward_s": backward - forward,
                "optimizer_s": end - backward, "loss": self.loss}

    def generate(self, k):
        s, t = self.settings, self.tensors
        self.model.eval()
        ids, mask = t[f"gen{k}.gloss_ids"], t[f"gen{k}.gloss_mask"]
        start = time.perf_counter()
        with torch.no_grad():
            embeds = self.embed(ids)
            prompt = torch.full((ids.shape[0], 1), s["decoder_start_id"], dtype=torch.long)
            out = self.model.generate(
                inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=prompt,
                decoder_start_token_id=s["decoder_start_id"], num_beams=s["num_beams"],
                max_length=s["max_length"], length_penalty=s["length_penalty"], do_sample=False,
                early_stopping=False)
        elapsed = time.perf_counter() - start
        return {"time_s": elapsed, "sequences": out.tolist()}


def main():
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
    attn = sys.argv[sys.argv.index("--attn") + 1] if "--attn" in sys.argv else "eager"
    torch.set_num_threads(threads)
    bench = None
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        try:
            if command == "setup":
                bench = None
                bench = Bench(arg, attn)
                reply = {"ready": True, "threads": torch.get_num_threads(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "attn": attn}
            elif command == "step" and bench is not None:
                reply = bench.step()
            elif command == "generate" and bench is not None:
                reply = bench.generate(int(arg))
            else:
                reply = {"error": f"unexpected command {line.strip()!r}"}
        except Exception as e:  # reported to slt, which stops with the message
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
