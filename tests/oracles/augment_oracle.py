"""PyTorch oracle for slt's spatial augmentation (tests/augment_oracle.rs).

Usage: augment_oracle.py SPEC.json

SPEC is a JSON list of cases:
  {"name": str, "frame": path to raw u8 HWC RGB bytes, "width": int, "height": int,
   "jitter": [[op, factor], ...]   op in brightness|contrast|saturation|hue, applied in order,
   "center_crop": int | null,      torchvision 0.10 CenterCrop (zero padding) ...
   "crop": [top, left, h, w] | null,  ... or torchvision 0.10 crop (zero padding outside)
   "out_size": int,
   "output": path}                 receives float32 little-endian [3, out, out] (BGR, (x-0.5)/0.5)

The transforms restate torchvision 0.10's tensor semantics with plain torch ops (torchvision is
not needed): frames -> float /255 -> colour jitter -> crop -> F.interpolate(bilinear,
align_corners=False, antialias=False) -> BGR -> (x - 0.5) / 0.5.
"""

import json
import sys

import numpy as np
import torch
import torch.nn.functional as F


def blend(img1, img2, ratio):
    ratio = float(ratio)
    return (ratio * img1 + (1.0 - ratio) * img2).clamp(0, 1.0)


def grayscale(img):
    r, g, b = img.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(dim=-3)


def adjust_brightness(img, factor):
    return blend(img, torch.zeros_like(img), factor)


def adjust_contrast(img, factor):
    mean = torch.mean(grayscale(img), dim=(-3, -2, -1), keepdim=True)
    return blend(img, mean, factor)


def adjust_saturation(img, factor):
    return blend(img, grayscale(img), factor)


def rgb_to_hsv(img):
    r, g, b = img.unbind(dim=-3)
    maxc = torch.max(img, dim=-3).values
    minc = torch.min(img, dim=-3).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc = (maxc - r) / cr_divisor
    gc = (maxc - g) / cr_divisor
    bc = (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(img):
    h, s, v = img.unbind(dim=-3)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(dtype=torch.int32)
    p = torch.clamp(v * (1.0 - s), 0.0, 1.0)
    q = torch.clamp(v * (1.0 - s * f), 0.0, 1.0)
    t = torch.clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    i = i % 6
    mask = i.unsqueeze(dim=-3) == torch.arange(6).view(-1, 1, 1)
    a1 = torch.stack((v, q, p, p, t, v), dim=-3)
    a2 = torch.stack((t, v, v, q, p, p), dim=-3)
    a3 = torch.stack((p, p, t, v, v, q), dim=-3)
    a4 = torch.stack((a1, a2, a3), dim=-4)
    return torch.einsum("...ijk, ...xijk -> ...xjk", mask.to(dtype=img.dtype), a4)


def adjust_hue(img, factor):
    h, s, v = rgb_to_hsv(img).unbind(dim=-3)
    h = (h + factor) % 1.0
    return hsv_to_rgb(torch.stack((h, s, v), dim=-3))


JITTER = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}


def pad_zero(img, left, top, right, bottom):
    return F.pad(img, [left, right, top, bottom], mode="constant", value=0.0)


def crop(img, top, left, height, width):
    h, w = img.shape[-2:]
    right, bottom = left + width, top + height
    if left < 0 or top < 0 or right > w or bottom > h:
        padding = [max(-left, 0), max(-top, 0), max(right - w, 0), max(bottom - h, 0)]
        return pad_zero(img[..., max(top, 0):bottom, max(left, 0):right], *padding)
    return img[..., top:bottom, left:right]


def center_crop(img, size):
    h, w = img.shape[-2:]
    if size > w or size > h:
        img = pad_zero(
            img,
            (size - w) // 2 if size > w else 0,
            (size - h) // 2 if size > h else 0,
            (size - w + 1) // 2 if size > w else 0,
            (size - h + 1) // 2 if size > h else 0,
        )
        h, w = img.shape[-2:]
        if (h, w) == (size, size):
            return img
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return crop(img, top, left, size, size)


def run_case(case):
    raw = np.fromfile(case["frame"], dtype=np.uint8)
    frame = torch.from_numpy(raw.reshape(case["height"], case["width"], 3).copy())
    x = frame.permute(2, 0, 1).unsqueeze(0) / 255  # [1, 3, H, W] float32
    for op, factor in case["jitter"]:
        x = JITTER[op](x, factor)
    if case.get("center_crop") is not None:
        x = center_crop(x, case["center_crop"])
    elif case.get("crop") is not None:
        x = crop(x, *case["crop"])
    size = case["out_size"]
    x = F.interpolate(x, size=[size, size], mode="bilinear", align_corners=False, antialias=False)
    x = x[:, [2, 1, 0]]
    x = (x - 0.5) / 0.5
    x[0].contiguous().numpy().astype("<f4").tofile(case["output"])


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    torch.set_num_threads(1)
    for case in cases:
        run_case(case)


if __name__ == "__main__":
    main()
