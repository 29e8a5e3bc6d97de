"""Oracle for tests/optimizer_parity.rs: torch.optim.Adam + CosineAnnealingLR trajectories.

Usage: python adam_oracle.py IN.json OUT.json

IN.json:
  {"adam_cases": [{
      "hyper": {"betas": [b1, b2], "eps": e, "weight_decay": wd, "amsgrad": bool},
      "groups": [{"name": g, "lr": lr, "params": [param names]}],
      "params": {name: {"shape": [...], "values": [...]}},
      "t_max": T, "eta_min": m, "epochs": E, "steps_per_epoch": S,
      "trainable": [[names trainable in epoch e] for e in range(E)],
      "steps": [{"grads": {name: [values]}}]   # E*S entries; only these params get a gradient
   }],
   "schedule_cases": [{"t_max": T, "eta_min": m, "base_lrs": [...], "steps": n}]}

The reference's loop (SLRT training.py): at the start of every epoch `scheduler.step()`, then
per batch `zero_grad()` (set_to_none), backward, `optimizer.step()`.

OUT.json (numbers as IEEE bit patterns, so that nothing is lost in decimal):
  {"adam_cases": [{"lrs": [[f64 bits per group] per epoch],
                   "params": [{name: [f32 bits]} per step]}],
   "schedule_cases": [[[f64 bits per group] per step]]}
"""

import json
import struct
import sys
import warnings

import torch

warnings.filterwarnings("ignore")  # "lr_scheduler.step() before optimizer.step()" is intended


def f64_bits(x):
    return struct.unpack("<q", struct.pack("<d", float(x)))[0]


def f32_bits(t):
    return t.detach().reshape(-1).contiguous().view(torch.int32).tolist()


def run_adam(case):
    params = {
        name: torch.tensor(p["values"], dtype=torch.float32).reshape(p["shape"])
        for name, p in case["params"].items()
    }
    hyper = case["hyper"]
    groups = [
        {"params": [params[n] for n in g["params"]], "lr": g["lr"]} for g in case["groups"]
    ]
    opt = torch.optim.Adam(
        groups,
        betas=tuple(hyper["betas"]),
        eps=hyper["eps"],
        weight_decay=hyper["weight_decay"],
        amsgrad=hyper["amsgrad"],
        foreach=False,
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=case["t_max"], eta_min=case["eta_min"]
    )
    out = {"lrs": [], "params": []}
    step = 0
    for epoch in range(case["epochs"]):
        trainable = set(case["trainable"][epoch])
        for name, p in params.items():
            p.requires_grad_(name in trainable)
        sched.step()
        out["lrs"].append([f64_bits(g["lr"]) for g in opt.param_groups])
        for _ in range(case["steps_per_epoch"]):
            opt.zero_grad(set_to_none=True)
            grads = case["steps"][step]["grads"]
            loss = torch.zeros(())
            for name, values in grads.items():
                g = torch.tensor(values, dtype=torch.float32).reshape(params[name].shape)
                loss = loss + (params[name] * g).sum()
            if grads:
                loss.backward()
            opt.step()
            out["params"].append({n: f32_bits(p) for n, p in params.items()})
            step += 1
    return out


def run_schedule(case):
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in case["base_lrs"]]
    opt = torch.optim.SGD(groups, lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=case["t_max"], eta_min=case["eta_min"]
    )
    lrs = []
    for _ in range(case["steps"]):
        sched.step()
        lrs.append([f64_bits(g["lr"]) for g in opt.param_groups])
    return lrs


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    out = {
        "torch": torch.__version__,
        "adam_cases": [run_adam(c) for c in spec["adam_cases"]],
        "schedule_cases": [run_schedule(c) for c in spec["schedule_cases"]],
    }
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
