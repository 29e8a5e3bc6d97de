#!/usr/bin/env python3
"""Python baseline for `slt bench s2g-step`: one Sign2Gloss training step in plain PyTorch.

The network is the reference's S2G model written with torch.nn: S3D blocks 1-4 (separable 3D
convolutions, BatchNorm3d eps 1e-3 / momentum 0.001, Mixed_3b..4f), block 1 frozen
(requires_grad False and kept in eval mode, as Phoenix's freeze_block 1), spatial mean pooling,
the visual head (Linear 832->512, BatchNorm over the valid frames, ReLU, sinusoidal PE, dropout,
pre-LN Conv1d feed-forward 512->2048->512 with k=3, LayerNorm, Linear 512->V) and the CTC loss
(blank 0, zero_infinity, sum / B). Optimizer: torch.optim.Adam(lr 1e-3, betas (0.9, 0.998),
eps 1e-8, weight_decay 1e-3).

One step = zero_grad(set_to_none) + forward + backward + Adam.step, on a fixed random clip with a
random gloss target of min(10, T/4 - 2) ids. After `--warmup` steps, `--steps` steps are timed one by one; the median is
reported.

    python benches/s2g_step.py --threads 2 --shapes 32x112,64x224 --warmup 2 --steps 3

Prints one JSON line per clip shape. With `--serve` it answers `setup FRAMESxSIDE` / `step` lines
on stdin instead, so that `slt bench s2g-step --python` can alternate Rust and Python steps (on a
shared machine both then see the same background load).
"""
import argparse
import gc
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def bn3d(channels):
    return nn.BatchNorm3d(channels, eps=1e-3, momentum=1e-3)


class Unit3d(nn.Module):
    """1x1x1 convolution, BN, ReLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 1, bias=False)
        self.bn = bn3d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Separable3d(nn.Module):
    """(1,k,k) spatial convolution, BN, ReLU, then (k,1,1) temporal convolution, BN, ReLU."""

    def __init__(self, cin, cout, k, stride=1, pad=0):
        super().__init__()
        self.conv_s = nn.Conv3d(cin, cout, (1, k, k), (1, stride, stride), (0, pad, pad), bias=False)
        self.bn_s = bn3d(cout)
        self.conv_t = nn.Conv3d(cout, cout, (k, 1, 1), (stride, 1, 1), (pad, 0, 0), bias=False)
        self.bn_t = bn3d(cout)

    def forward(self, x):
        x = F.relu(self.bn_s(self.conv_s(x)))
        return F.relu(self.bn_t(self.conv_t(x)))


class Inception(nn.Module):
    """Four parallel branches concatenated on channels."""

    def __init__(self, cin, a, b, c, d):
        super().__init__()
        self.branch0 = Unit3d(cin, a)
        self.branch1 = nn.Sequential(Unit3d(cin, b[0]), Separable3d(b[0], b[1], 3, pad=1))
        self.branch2 = nn.Sequential(Unit3d(cin, c[0]), Separable3d(c[0], c[1], 3, pad=1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), Unit3d(cin, d))

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


def s3d_blocks_1_to_4():
    spatial_pool = lambda: nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))
    return nn.Sequential(
        Separable3d(3, 64, 7, 2, 3),                       # block 1
        spatial_pool(), Unit3d(64, 64), Separable3d(64, 192, 3, 1, 1),  # block 2
        spatial_pool(),
        Inception(192, 64, (96, 128), (16, 32), 32),
        Inception(256, 128, (128, 192), (32, 96), 64),      # block 3
        nn.MaxPool3d(3, 2, 1),
        Inception(480, 192, (96, 208), (16, 48), 64),
        Inception(512, 160, (112, 224), (24, 64), 64),
        Inception(512, 128, (128, 256), (24, 64), 64),
        Inception(512, 112, (144, 288), (32, 64), 64),
        Inception(528, 256, (160, 320), (32, 128), 128),    # block 4 (832 channels)
    )


class GlossHead(nn.Module):
    def __init__(self, vocab, din=832, hidden=512, ff=2048, max_len=5000):
        super().__init__()
        self.fc1 = nn.Linear(din, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        freq = torch.exp(torch.arange(0, hidden, 2, dtype=torch.float32) * -(math.log(10000.0) / hidden))
        pe = torch.zeros(max_len, hidden)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
        self.register_buffer("pe", pe.unsqueeze(0))
        self.ff_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.ff = nn.Sequential(
            nn.Conv1d(hidden, ff, 3, padding="same"), nn.ReLU(), nn.Dropout(0.1),
            nn.Conv1d(ff, hidden, 3, padding="same"), nn.Dropout(0.1))
        self.out_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.classifier = nn.Linear(hidden, vocab)

    def forward(self, x, valid):
        b, t, _ = x.shape
        h = self.fc1(x).reshape(b * t, -1)
        keep = valid.reshape(-1).nonzero().squeeze(1)
        h = h.index_copy(0, keep, self.norm(h.index_select(0, keep))).reshape(b, t, -1)
        h = F.dropout(F.relu(h) + self.pe[:, :t], 0.1, self.training)
        h = self.ff(self.ff_norm(h).transpose(1, 2)).transpose(1, 2) + h
        feature = self.out_norm(h)
        logits = self.classifier(feature)
        # The reference's head also returns these (unused by the S2G loss).
        extras = (F.normalize(feature, dim=-1), logits.softmax(-1))
        return logits.log_softmax(-1), extras


class Sign2Gloss(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.base = s3d_blocks_1_to_4()
        self.head = GlossHead(vocab)
        for p in self.base[0].parameters():  # freeze_block 1
            p.requires_grad = False

    def train(self, mode=True):
        super().train(mode)
        self.base[0].eval()  # frozen blocks keep their running statistics
        return self

    def forward(self, video, lengths):
        feat = self.base(video).mean(dim=(3, 4)).transpose(1, 2)  # [B, T', 832]
        t_out = feat.shape[1]
        valid_len = torch.div(lengths * t_out, video.shape[2], rounding_mode="floor")
        valid = torch.arange(t_out).unsqueeze(0) < valid_len.unsqueeze(1)
        log_probs, _ = self.head(feat, valid)
        return log_probs, valid_len


class Stepper:
    """A fresh model, optimizer, clip and target for one clip shape; `step()` times one step."""

    def __init__(self, frames, side, args):
        torch.manual_seed(0)
        self.model = Sign2Gloss(args.vocab).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.998),
                                          eps=1e-8, weight_decay=1e-3)
        self.ctc = nn.CTCLoss(blank=0, zero_infinity=True, reduction="sum")
        self.video = torch.rand(1, 3, frames, side, side) * 2 - 1
        self.lengths = torch.tensor([frames])
        # At most T'-2 glosses so that the CTC alignment exists (T' = frames / 4).
        self.n_glosses = max(1, min(args.target_len, frames // 4 - 2))
        self.target = torch.randint(4, args.vocab, (1, self.n_glosses))
        self.target_len = torch.tensor([self.n_glosses])
        self.shape = [1, 3, frames, side, side]
        self.loss = float("nan")

    def step(self):
        """One step; returns (total, forward incl. zero_grad and loss, backward, optimizer) s."""
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        log_probs, valid_len = self.model(self.video, self.lengths)
        loss = self.ctc(log_probs.transpose(0, 1), self.target, valid_len, self.target_len)
        loss = loss / self.video.shape[0]
        forward = time.perf_counter()
        loss.backward()
        backward = time.perf_counter()
        self.optimizer.step()
        end = time.perf_counter()
        self.loss = float(loss.detach())
        return end - start, forward - start, backward - forward, end - backward


def parse_shape(text):
    frames, side = (int(v) for v in text.split("x"))
    return frames, side


def serve(args):
    """Line protocol for `slt bench s2g-step --python`, which alternates Rust and Python steps:
    `setup FRAMESxSIDE` builds a fresh Stepper, `step` runs one step; one JSON reply per line."""
    stepper = None
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "setup":
            stepper = None
            gc.collect()
            stepper = Stepper(*parse_shape(arg), args)
            reply = {"ready": True, "shape": stepper.shape, "target_len": stepper.n_glosses,
                     "threads": torch.get_num_threads(), "torch": torch.__version__}
        elif command == "step" and stepper is not None:
            total, forward, backward, optimizer = stepper.step()
            reply = {"time_s": total, "forward_s": forward, "backward_s": backward,
                     "optimizer_s": optimizer, "loss": stepper.loss}
        else:
            reply = {"error": f"unexpected command {line.strip()!r}"}
        print(json.dumps(reply), flush=True)


def measure(frames, side, args):
    stepper = Stepper(frames, side, args)
    times = [stepper.step()[0] for _ in range(args.warmup + args.steps)][args.warmup:]
    return {
        "impl": "python", "shape": stepper.shape, "threads": torch.get_num_threads(),
        "warmup": args.warmup, "steps": args.steps, "median_s": statistics.median(times),
        "times_s": times, "target_len": stepper.n_glosses, "loss": stepper.loss,
        "torch": torch.__version__,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", default="32x112,64x224", help="FRAMESxSIDE,…")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=1124)
    parser.add_argument("--target-len", type=int, default=10)
    parser.add_argument("--serve", action="store_true", help="answer setup/step lines on stdin")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.serve:
        serve(args)
        return
    for shape in args.shapes.split(","):
        print(json.dumps(measure(*parse_shape(shape), args)), flush=True)


if __name__ == "__main__":
    main()
