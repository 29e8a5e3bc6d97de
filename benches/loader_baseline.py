#!/usr/bin/env python3
"""Python baseline for `slt bench loader`: load a reference-layout video zip the way SLRT does.

Per sample, as the reference's `dataset/VideoLoader.py`: temporal sampling with numpy, each
selected frame read from the zip (one cached `zipfile.ZipFile` per worker process) and decoded
with PIL `.convert('RGB')`, PILToTensor, /255, stacked; the batch padded by repeating the last
frame. The reference then augments on the GPU inside the model (`recognition.py`); here the
same torchvision ops run in the DataLoader's collate on the CPU (colour jitter with p = 0.3,
RandomResizedCrop.get_params + resized_crop to img×img, or centre crop + resize for eval), then
BGR and (x − 0.5)/0.5, so both sides produce the same [B, 3, T, img, img] float32 batches.

    python benches/loader_baseline.py --data data/bench-loader --workers 2 --mode train

Prints one JSON line per run with frames/s and MB/s of the output tensors.
"""
import argparse
import gzip
import io
import json
import pickle
import random
import time
import zipfile

import numpy as np
import torch
import torchvision
from PIL import Image

MAX_FRAMES = 400


def selected_indices(vlen, tmin, tmax):
    if tmin == 1 and tmax == 1:
        if vlen <= MAX_FRAMES:
            idx, valid = np.arange(vlen), vlen
        else:
            start = (vlen - MAX_FRAMES) // 2
            idx, valid = np.arange(vlen)[start:start + MAX_FRAMES], MAX_FRAMES
        valid -= valid % 4
        return idx[:valid]
    lo, hi = int(tmin * vlen), min(MAX_FRAMES, int(tmax * vlen))
    n = np.random.randint(lo, hi + 1)
    if n % 4:
        n += 4 - n % 4
    if n <= vlen:
        return sorted(np.random.permutation(np.arange(vlen))[:n])
    return sorted(np.concatenate([np.arange(vlen), np.random.randint(0, vlen, n - vlen)]))


class ZipVideos(torch.utils.data.Dataset):
    def __init__(self, zip_path, records, train):
        self.zip_path, self.records, self.train = zip_path, records, train
        self.handle = None  # one per worker process, opened lazily after the fork

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        if self.handle is None:
            self.handle = zipfile.ZipFile(self.zip_path)
        rec = self.records[i]
        tmin, tmax = (0.5, 1.5) if self.train else (1, 1)
        frames = []
        for fi in selected_indices(rec["num_frames"], tmin, tmax):
            data = self.handle.read(f"images/{rec['name']}/images{fi + 1:04d}.png")
            img = Image.open(io.BytesIO(data)).convert("RGB")
            frames.append(torch.from_numpy(np.asarray(img)).permute(2, 0, 1))
        return torch.stack(frames) / 255  # [T, C, H, W]


def collate(videos, train, img):
    longest = max(v.shape[0] for v in videos)
    padded = [torch.cat([v, v[-1:].expand(longest - v.shape[0], -1, -1, -1)]) for v in videos]
    x = torch.stack(padded)  # [B, T, C, H, W]
    B, T, C, H, W = x.shape
    x = x.view(B * T, C, H, W)
    F = torchvision.transforms.functional
    if train:
        if random.random() < 0.3:
            x = torchvision.transforms.ColorJitter(0.4, 0.4, 0.4, 0.1)(x)
        i, j, h, w = torchvision.transforms.RandomResizedCrop.get_params(x, (0.7, 1.0), (0.75, 1.3))
        x = F.resized_crop(x, i, j, h, w, [img, img], antialias=False)
    else:
        x = F.resize(F.center_crop(x, img), [img, img], antialias=False)
    x = x.view(B, T, C, img, img)[:, :, [2, 1, 0]]
    return ((x - 0.5) / 0.5).permute(0, 2, 1, 3, 4).float().contiguous()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with videos.zip and synthetic.train")
    ap.add_argument("--split", default="train")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--mode", choices=["train", "eval"], default="train")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--videos", type=int, default=0, help="use the first N videos (0 = all)")
    args = ap.parse_args()

    torch.set_num_threads(1)  # one core per worker process, as the Rust pool uses one per thread
    with gzip.open(f"{args.data}/synthetic.{args.split}", "rb") as f:
        records = pickle.load(f)
    if args.videos:
        records = records[: args.videos]
    train = args.mode == "train"
    dataset = ZipVideos(f"{args.data}/videos.zip", records, train)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        num_workers=args.workers,
        collate_fn=lambda b: collate(b, train, args.img_size),
        persistent_workers=False,
    )
    frames = out_bytes = batches = 0
    start = time.perf_counter()
    for batch in loader:
        batches += 1
        frames += batch.shape[0] * batch.shape[2]
        out_bytes += batch.numel() * batch.element_size()
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "impl": "python-reference", "mode": args.mode, "workers": args.workers,
        "batches": batches, "frames": frames, "seconds": round(elapsed, 3),
        "frames_per_s": round(frames / elapsed, 1), "mb_per_s": round(out_bytes / elapsed / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
