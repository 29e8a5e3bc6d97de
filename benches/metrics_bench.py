#!/usr/bin/env python3
"""Python baseline for `slt bench metrics`: corpus BLEU-1..4 with sacrebleu 1.4.2 (the version the
reference vendors; `raw_corpus_bleu`: no tokenisation, floor smoothing 0, effective order) and
sentence-mean ROUGE-L F with beta = P/R (the formula of the reference's `Rouge.py`), timed.

    python benches/metrics_bench.py INPUT.json REPEATS

INPUT.json: {"references": [...], "hypotheses": [...], "level": "word" | "char"}. Prints one JSON
line: the scores and the per-repeat seconds of each metric. Needs sacrebleu 1.4.2 in this Python:
    pip install --no-deps sacrebleu==1.4.2 portalocker
"""
import json
import math
import sys
import time

try:
    import sacrebleu
except ImportError:
    sys.exit("benches/metrics_bench.py needs sacrebleu 1.4.2: "
             f"{sys.executable} -m pip install --no-deps sacrebleu==1.4.2 portalocker")


def char_level(text):
    return " ".join(list(text))


def bleu_1_to_4(references, hypotheses):
    """Cumulative BLEU-n, n = 1..4, from one raw_corpus_bleu call (its BLEU-4 is `score`)."""
    result = sacrebleu.raw_corpus_bleu(hypotheses, [references])
    bp = 1.0 if result.sys_len >= result.ref_len else math.exp(1 - result.ref_len / max(result.sys_len, 1))
    logs, out = [], []
    for n in range(4):
        p = 100.0 * result.counts[n] / result.totals[n] if result.totals[n] > 0 else 0.0
        logs.append(math.log(p) if p > 0 else -9999999999)
        out.append(bp * math.exp(sum(logs) / (n + 1)))
    assert abs(out[3] - result.score) < 1e-9 * max(1.0, result.score), (out[3], result.score)
    return out


def lcs(a, b):
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(references, hypotheses):
    total = 0.0
    for ref, hyp in zip(references, hypotheses):
        r, h = ref.split(" "), hyp.split(" ")
        common = lcs(r, h)
        rec, prec = common / len(r), common / len(h)
        beta = prec / (rec + 1e-12)
        total += (1 + beta ** 2) * rec * prec / (rec + beta ** 2 * prec + 1e-12)
    return 100.0 * total / len(references)


def main():
    with open(sys.argv[1]) as f:
        data = json.load(f)
    repeats = int(sys.argv[2])
    refs, hyps = data["references"], data["hypotheses"]
    times = {"bleu": [], "rouge": []}
    for _ in range(repeats):
        start = time.perf_counter()
        r, h = (refs, hyps) if data["level"] == "word" else ([char_level(s) for s in refs], [char_level(s) for s in hyps])
        bleu = bleu_1_to_4(r, h)
        times["bleu"].append(time.perf_counter() - start)
        start = time.perf_counter()
        rouge = rouge_l(r, h)
        times["rouge"].append(time.perf_counter() - start)
    print(json.dumps({"bleu": bleu, "rouge_l": rouge, "bleu_times_s": times["bleu"],
                      "rouge_times_s": times["rouge"], "sacrebleu": sacrebleu.VERSION}))


if __name__ == "__main__":
    main()
