"""Hugging Face transformers oracle for slt's mBART (tests/mbart_hf.rs).

Usage:
  mbart_oracle.py make SPEC.json     build a random tiny mBART, save_pretrained it, run cases
  mbart_oracle.py logits SPEC.json   load a model directory (e.g. written by slt) and run the
                                     forward pass of the cases stored by `make`

SPEC (make):
  {"seed": int, "config": {MBartConfig kwargs}, "eos_bias": float, "out_dir": path,
   "cases": [{"name": str, "batch": int, "src_len": int, "valid_lens": [int], "use_ids": bool,
              "dec_len": int, "start_token": int,
              "generate": [{"num_beams": int, "max_length": int, "length_penalty": float}]}]}
  Writes out_dir/model (save_pretrained), out_dir/model_bin (config.json + pytorch_model.bin
  from torch.save(state_dict), tied copies included), out_dir/io.safetensors and
  out_dir/results.json.
  io.safetensors per case: <name>.inputs_embeds | <name>.input_ids, <name>.attention_mask,
  <name>.decoder_input_ids, <name>.logits, <name>.encoder_last_hidden_state, and per generate
  setting i: <name>.gen<i>.sequences, <name>.gen<i>.sequences_scores (beam) or
  <name>.gen<i>.token_logprobs (greedy: log_softmax of the processed scores at each chosen token).

SPEC (bench): {"seed", "config", "out_dir", "batch", "src_len", "num_beams", "max_length",
  "repeats", "eos_bias" (null: HF init; else randomised as in make)}: saves the model to out_dir/model and inputs_embeds to
  out_dir/bench_io.safetensors, times model.generate (beam search, eval, no grad) and writes
  out_dir/bench.json {"seconds": [..], "sequences_shape": [..], "transformers_version"}.

SPEC (logits): {"model_dir": path, "io": path (from make), "cases": [names], "output": path}
  Writes <name>.logits for every case.

Optional: with SLT_HF411_BEAM_SEARCH=<path to transformers 4.11.3's generation_beam_search.py>
(e.g. from `pip download --no-deps transformers==4.11.3`, unzipped), beam settings are also run
with that release's BeamSearchScorer driven by a restatement of its `beam_search` loop (full
decoder recomputation, no cache), written as <name>.gen<i>.hf411.{sequences,sequences_scores}:
the reference's own beam-search rules.

Generation passes decoder_input_ids = [[start]] * B and decoder_start_token_id = start, so that
transformers >= 4.41 does not prepend its own start token (the reference, on 4.11.3, did not).
"""

import json
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
import transformers
from transformers import MBartConfig, MBartForConditionalGeneration


def load_scorer_411():
    """BeamSearchScorer from a transformers 4.11.3 source file (only its one relative import
    is replaced), or None."""
    path = os.environ.get("SLT_HF411_BEAM_SEARCH")
    if not path:
        return None
    import types
    with open(path) as f:
        src = f.read()
    src = src.replace("from .file_utils import add_start_docstrings",
                      "def add_start_docstrings(*a):\n    return lambda f: f")
    module = types.ModuleType("generation_beam_search_4_11_3")
    exec(compile(src, path, "exec"), module.__dict__)
    return module.BeamSearchScorer


def beam_search_411(scorer_cls, model, enc_kwargs, prompt, num_beams, length_penalty, max_length):
    """transformers 4.11.3 `beam_search` as generate() ran it for the reference: log_softmax,
    ForcedEOS at max_length - 1, + beam scores, top 2k over k*V, scorer.process, finalize."""
    cfg = model.config
    b, k = prompt.shape[0], num_beams
    with torch.no_grad():
        enc = model.get_encoder()(**enc_kwargs).last_hidden_state.repeat_interleave(k, 0)
        mask = enc_kwargs["attention_mask"].repeat_interleave(k, 0)
        ids = prompt.repeat_interleave(k, 0)
        beam_scores = torch.zeros(b, k)
        beam_scores[:, 1:] = -1e9
        beam_scores = beam_scores.view(-1)
        scorer = scorer_cls(batch_size=b, num_beams=k, device=torch.device("cpu"),
                            length_penalty=length_penalty, do_early_stopping=False)
        while True:
            logits = model(encoder_outputs=(enc,), attention_mask=mask, decoder_input_ids=ids).logits[:, -1, :]
            scores = torch.log_softmax(logits, -1)
            if cfg.forced_eos_token_id is not None and ids.shape[-1] == max_length - 1:
                forced = torch.full_like(scores, -float("inf"))
                forced[:, cfg.forced_eos_token_id] = 0
                scores = forced
            vocab = scores.shape[-1]
            scores = (scores + beam_scores[:, None]).view(b, k * vocab)
            next_scores, next_tokens = torch.topk(scores, 2 * k, dim=1, largest=True, sorted=True)
            next_indices = next_tokens // vocab
            next_tokens = next_tokens % vocab
            out = scorer.process(ids, next_scores, next_tokens, next_indices,
                                 pad_token_id=cfg.pad_token_id, eos_token_id=cfg.eos_token_id)
            beam_scores = out["next_beam_scores"]
            ids = torch.cat([ids[out["next_beam_indices"], :], out["next_beam_tokens"].unsqueeze(-1)], -1)
            if scorer.is_done or ids.shape[-1] >= max_length:
                break
        res = scorer.finalize(ids, beam_scores, next_tokens, next_indices, pad_token_id=cfg.pad_token_id,
                              eos_token_id=cfg.eos_token_id, max_length=max_length)
    return res["sequences"], res["sequence_scores"]


def eager(model):
    # Plain attention (like the reference's 4.11.3 code); sdpa would differ only by rounding.
    try:
        model.set_attn_implementation("eager")
    except Exception:  # older transformers
        model.config._attn_implementation = "eager"
    return model


def randomise(model, eos_id, eos_bias):
    """Non-trivial random weights so that generation stops at varying lengths."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("shared.weight"):
                p.normal_(0.0, 0.25)
            elif "layer_norm" in name or "layernorm" in name:
                if name.endswith("weight"):
                    p.uniform_(0.7, 1.3)
                else:
                    p.uniform_(-0.1, 0.1)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.02)
            else:
                p.normal_(0.0, 0.5)
        model.final_logits_bias.normal_(0.0, 0.1)
        model.final_logits_bias[0, eos_id] += eos_bias


def forward(model, case_tensors, name):
    kwargs = {"attention_mask": case_tensors[f"{name}.attention_mask"],
              "decoder_input_ids": case_tensors[f"{name}.decoder_input_ids"]}
    if f"{name}.input_ids" in case_tensors:
        kwargs["input_ids"] = case_tensors[f"{name}.input_ids"]
    else:
        kwargs["inputs_embeds"] = case_tensors[f"{name}.inputs_embeds"]
    with torch.no_grad():
        return model(**kwargs)


def make(spec):
    torch.manual_seed(spec["seed"])
    cfg = MBartConfig(**spec["config"])
    model = eager(MBartForConditionalGeneration(cfg)).eval()
    randomise(model, cfg.eos_token_id, spec["eos_bias"])
    out_dir = spec["out_dir"]
    model.save_pretrained(os.path.join(out_dir, "model"))
    # The pre-safetensors layout of HF directories (as the reference's mBart_de has it):
    # torch.save(state_dict) with every tied copy, next to config.json.
    bin_dir = os.path.join(out_dir, "model_bin")
    os.makedirs(bin_dir, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(bin_dir, "pytorch_model.bin"))
    shutil.copy(os.path.join(out_dir, "model", "config.json"), bin_dir)
    scorer_411 = load_scorer_411()
    d = cfg.d_model
    tensors, results = {}, {"transformers_version": transformers.__version__, "cases": {}}
    for case in spec["cases"]:
        name, b, s = case["name"], case["batch"], case["src_len"]
        mask = torch.zeros(b, s, dtype=torch.long)
        for i, n in enumerate(case["valid_lens"]):
            mask[i, :n] = 1
        enc_kwargs = {"attention_mask": mask}
        if case["use_ids"]:
            ids = torch.randint(3, cfg.vocab_size, (b, s)) * mask + cfg.pad_token_id * (1 - mask)
            tensors[f"{name}.input_ids"] = ids
            enc_kwargs["input_ids"] = ids
        else:
            # Like the reference: features zero after the valid length, then x sqrt(d_model).
            embeds = torch.randn(b, s, d) * mask[:, :, None] * d ** 0.5
            tensors[f"{name}.inputs_embeds"] = embeds
            enc_kwargs["inputs_embeds"] = embeds
        tensors[f"{name}.attention_mask"] = mask
        dec = torch.randint(3, cfg.vocab_size, (b, case["dec_len"]))
        dec[:, 0] = case["start_token"]
        tensors[f"{name}.decoder_input_ids"] = dec
        out = forward(model, tensors, name)
        tensors[f"{name}.logits"] = out.logits.contiguous()
        tensors[f"{name}.encoder_last_hidden_state"] = out.encoder_last_hidden_state.contiguous()
        start = case["start_token"]
        for i, g in enumerate(case["generate"]):
            prompt = torch.full((b, 1), start, dtype=torch.long)
            with torch.no_grad():
                gen = model.generate(**enc_kwargs, decoder_input_ids=prompt, decoder_start_token_id=start,
                                     num_beams=g["num_beams"], length_penalty=g["length_penalty"],
                                     max_length=g["max_length"], do_sample=False, early_stopping=False,
                                     return_dict_in_generate=True, output_scores=True)
            key = f"{name}.gen{i}"
            tensors[f"{key}.sequences"] = gen.sequences.contiguous()
            if g["num_beams"] > 1:
                tensors[f"{key}.sequences_scores"] = gen.sequences_scores.float().contiguous()
                if scorer_411 is not None:
                    seqs, scores = beam_search_411(scorer_411, model, enc_kwargs, prompt, g["num_beams"],
                                                   g["length_penalty"], g["max_length"])
                    tensors[f"{key}.hf411.sequences"] = seqs.contiguous()
                    tensors[f"{key}.hf411.sequences_scores"] = scores.float().contiguous()
            else:
                chosen = gen.sequences[:, 1:]
                lp = torch.stack([torch.log_softmax(sc.float(), -1).gather(1, chosen[:, j:j + 1])[:, 0]
                                  for j, sc in enumerate(gen.scores)], dim=1)
                tensors[f"{key}.token_logprobs"] = lp.contiguous()
    save_file(tensors, os.path.join(out_dir, "io.safetensors"))
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f)


def logits(spec):
    model = eager(MBartForConditionalGeneration.from_pretrained(spec["model_dir"])).eval()
    tensors = load_file(spec["io"])
    out = {}
    for name in spec["cases"]:
        out[f"{name}.logits"] = forward(model, tensors, name).logits.contiguous()
    save_file(out, spec["output"])


def bench(spec):
    import time
    torch.manual_seed(spec["seed"])
    cfg = MBartConfig(**spec["config"])
    model = eager(MBartForConditionalGeneration(cfg)).eval()
    if spec.get("eos_bias") is not None:
        randomise(model, cfg.eos_token_id, spec["eos_bias"])
    out_dir = spec["out_dir"]
    model.save_pretrained(os.path.join(out_dir, "model"))
    b, s = spec["batch"], spec["src_len"]
    embeds = torch.randn(b, s, cfg.d_model) * cfg.d_model ** 0.5
    mask = torch.ones(b, s, dtype=torch.long)
    save_file({"inputs_embeds": embeds, "attention_mask": mask}, os.path.join(out_dir, "bench_io.safetensors"))
    prompt = torch.full((b, 1), 6, dtype=torch.long)
    seconds, shape = [], None
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=prompt,
                                 decoder_start_token_id=6, num_beams=spec["num_beams"], length_penalty=1.0,
                                 max_length=spec["max_length"], do_sample=False, early_stopping=False)
        seconds.append(time.perf_counter() - start)
        shape = list(out.shape)
    lengths = (out != cfg.pad_token_id).sum(1).tolist()
    with open(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump({"seconds": seconds, "sequences_shape": shape, "lengths": lengths,
                   "transformers_version": transformers.__version__}, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    mode, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        spec = json.load(f)
    {"make": make, "logits": logits, "bench": bench}[mode](spec)
