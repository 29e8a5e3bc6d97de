"""How fast does a randomly initialised network learn isolated synthetic signs? (PyTorch eager)

A diagnostic behind docs/RESULTS.md ("Why a randomly initialised S3D is slow"): the S3D blocks
1-4 of s2g_step.py (the reference architecture, BatchNorm momentum 0.1) or a 4-layer 3D CNN, each
followed by spatio-temporal mean pooling and a linear classifier, trained with cross-entropy and
Adam on single-gloss clips, accuracy on held-out clips printed every 400 training clips.

    slt data synth --out /tmp/iso_train --width 64 --height 80 --train 0 --isolated-train 800
    slt data synth --out /tmp/iso_dev --width 64 --height 80 --train 0 --isolated-train 200 \\
        --dev 1 --test 1 --seed 5
    SIDE=32 python benches/s3d_scratch_probe.py /tmp/iso_train /tmp/iso_dev s3d 8 3e-4 130

Arguments: train set, held-out set (its train split is used), `s3d` or `small`, batch size,
learning rate, seconds to run. SIDE (default 48) is the square input size, THREADS (default 2)
the intra-op threads. Every clip is resized whole to SIDE x SIDE and resampled to 20 frames.
"""
import gzip
import io
import os
import pickle
import sys
import time
import zipfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s2g_step  # noqa: E402

FRAMES = 20
SIDE = int(os.environ.get("SIDE", "48"))


def load(root):
    records = pickle.load(gzip.open(os.path.join(root, "synthetic.train")))
    archive = zipfile.ZipFile(os.path.join(root, "videos.zip"))
    with open(os.path.join(root, "gloss2ids.pkl"), "rb") as f:
        vocab = pickle.load(f)
    clips, labels = [], []
    for r in records:
        glosses = r["gloss"].split()
        if len(glosses) != 1:
            raise SystemExit(f"{root}: {r['name']} signs {len(glosses)} glosses, expected 1")
        picks = np.linspace(0, r["num_frames"] - 1, FRAMES).round().astype(int)
        frames = []
        for i in picks:
            png = archive.read(f"images/{r['name']}/images{i + 1:04d}.png")
            image = Image.open(io.BytesIO(png)).convert("RGB").resize((SIDE, SIDE), Image.BILINEAR)
            frames.append(np.asarray(image))
        clips.append(np.stack(frames))
        labels.append(vocab[glosses[0].lower()] - 4)
    x = torch.tensor(np.stack(clips)).permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    return x, torch.tensor(labels)


def small_cnn():
    def block(cin, cout, stride):
        return nn.Sequential(nn.Conv3d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm3d(cout), nn.ReLU())

    return nn.Sequential(block(3, 32, (1, 2, 2)), block(32, 64, 2), block(64, 128, 2), block(128, 128, 2)), 128


def main():
    train_root, dev_root, variant, batch, lr, seconds = sys.argv[1:7]
    batch, lr, seconds = int(batch), float(lr), float(seconds)
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    torch.manual_seed(0)
    x_train, y_train = load(train_root)
    x_dev, y_dev = load(dev_root)
    classes = int(max(y_train.max(), y_dev.max())) + 1
    if variant == "s3d":
        body, width = s2g_step.s3d_blocks_1_to_4(), 832
        for m in body.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.momentum = 0.1
    else:
        body, width = small_cnn()
    head = nn.Linear(width, classes)
    params = list(body.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.998))

    def logits(x):
        return head(body(x).mean((2, 3, 4)))

    start, seen, losses = time.time(), 0, []
    while True:
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            body.train()
            loss = F.cross_entropy(logits(x_train[idx]), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            seen += len(idx)
            if seen % 400 < batch:
                body.eval()
                with torch.no_grad():
                    acc = (logits(x_dev).argmax(1) == y_dev).float().mean().item()
                print(f"{variant} side {SIDE} batch {batch} lr {lr:g}: {seen} clips, "
                      f"{time.time() - start:.0f} s, loss {np.mean(losses[-50:]):.3f}, "
                      f"held-out accuracy {acc:.3f}", flush=True)
            if time.time() - start > seconds:
                return


if __name__ == "__main__":
    main()
