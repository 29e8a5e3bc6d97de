"""Oracle for tests/torch_file.rs: writes files the way Python's torch.save / pickle do, and
the values they hold as JSON, so the Rust reader can be compared exactly.

    python torch_save_oracle.py OUT_DIR

Writes into OUT_DIR the files listed in OUT_DIR/expected.json:
  files[]   {name, loader: "torch"|"pickle", entries[], state_dict_keys?, tensor_dict_keys?}
            entries: {path, tensor: {dtype, shape, values, parameter, requires_grad}}
                     | {path, value} | {path, opaque: "module.Name"} | {path, len}
  hostile[] files with a pickled call of os.system (GLOBAL + REDUCE); `marker` must never appear
  broken[]  damaged torch files and a substring their error message must contain
Nothing here loads any of the written files.
"""

import argparse
import collections
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import torch
from torch import nn

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
I64 = 2**63


def tensor_entry(t):
    parameter = isinstance(t, nn.Parameter)
    requires_grad = bool(t.requires_grad)
    t = t.detach()
    flat = t.reshape(-1)
    if t.dtype in FLOATS:
        # Exact: the f64 bit patterns (JSON float parsing need not round-trip).
        values = flat.double().numpy().view(np.int64).tolist()
    elif t.dtype == torch.bool:
        values = [int(v) for v in flat.tolist()]
    else:
        values = flat.tolist()
    return {
        "dtype": str(t.dtype).replace("torch.", ""),
        "shape": list(t.shape),
        "values": values,
        "parameter": parameter,
        "requires_grad": requires_grad,
    }


def walk(obj, path, out):
    if isinstance(obj, torch.Tensor):
        out.append({"path": path, "tensor": tensor_entry(obj)})
    elif isinstance(obj, dict):
        out.append({"path": path, "len": len(obj)})
        for k, v in obj.items():
            walk(v, path + [k], out)
    elif isinstance(obj, (list, tuple)):
        out.append({"path": path, "len": len(obj)})
        for i, v in enumerate(obj):
            walk(v, path + [i], out)
    elif isinstance(obj, np.generic):
        walk(obj.item(), path, out)
    elif isinstance(obj, float):
        out.append({"path": path, "float_bits": struct.unpack("<q", struct.pack("<d", obj))[0]})
    elif isinstance(obj, int) and not isinstance(obj, bool) and not -I64 <= obj < I64:
        out.append({"path": path, "opaque": "builtins.int"})
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        out.append({"path": path, "value": obj})
    else:
        out.append({"path": path, "opaque": f"{type(obj).__module__}.{type(obj).__qualname__}"})
    return out


def s3d_checkpoint():
    """(a)/(b): a glosscls-like .pth.tar."""
    base = torch.randn(20)
    sd = collections.OrderedDict()
    sd["backbone.base.0.conv_s.weight"] = torch.randn(4, 3, 1, 7, 7)
    sd["backbone.base.0.bn_s.running_var"] = torch.rand(4) + 0.5
    sd["backbone.base.0.bn_s.num_batches_tracked"] = torch.tensor(12345)
    sd["backbone.base.2.conv.weight_t"] = torch.randn(5, 6).t()  # non-contiguous
    sd["backbone.base.3.view"] = base[5:11].view(2, 3)  # storage offset into a shared storage
    sd["backbone.base.3.full"] = base
    sd["backbone.base.4.tied"] = sd["backbone.base.0.bn_s.running_var"]  # same object twice
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return {
        "epoch": 3,
        "state_dict": sd,
        "arch": "s3d",
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "betas": (0.9, 0.999), "params": [0, 1, 2]}]},
    }


def slrt_checkpoint():
    """(c): what SLRT's training.py saves, for a tiny model named like the reference's."""
    root = nn.Module()
    root.recognition_network = nn.Module()
    root.recognition_network.visual_backbone = nn.Module()
    root.recognition_network.visual_backbone.backbone = nn.Module()
    root.recognition_network.visual_backbone.backbone.base = nn.Sequential(
        nn.Conv3d(3, 4, (1, 3, 3), bias=False), nn.BatchNorm3d(4)
    )
    root.recognition_network.visual_head = nn.Module()
    root.recognition_network.visual_head.fc1 = nn.Linear(8, 4)
    optimizer = torch.optim.Adam(root.parameters(), lr=1e-3, betas=(0.9, 0.998), weight_decay=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=40)
    loss = sum((p * p).sum() for p in root.parameters())
    loss.backward()
    optimizer.step()
    scheduler.step()
    return {
        "epoch": 5,
        "global_step": 4435,
        "model_state": root.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": scheduler.state_dict(),
        "best_score": np.float64(26.93),
        "current_score": 24.39,
        "steps_np": np.int64(-7),
        "huge": 2**70,
        "args": argparse.Namespace(lr=0.001, name="s2g"),
        "device": torch.device("cpu"),
    }


def gloss_embeddings():
    """(d): like gloss_embeddings.bin: special tokens are rows (views) of one big matrix."""
    table = torch.randn(10, 1024)
    out = {}
    for i, name in enumerate(["<s>", "<pad>", "</s>", "<unk>"]):
        out[name] = table[i]
    out["de_DGS"] = table[8]
    out["haus"] = table[[2, 5]].mean(0)
    out["äpfel"] = torch.randn(1024)
    return out


def dtypes():
    """(e): every supported dtype, odd geometries."""
    return {
        "f32": torch.randn(2, 3),
        "f64": torch.randn(3, dtype=torch.float64),
        "f16": torch.randn(4).half(),
        "bf16": torch.randn(4).bfloat16(),
        "f16_t": torch.randn(3, 2).half().t(),
        "i64": torch.tensor([-(2**62) - 1, 2**62 + 3, 0, -1], dtype=torch.int64),
        "i32": torch.tensor([-(2**31), 2**31 - 1, 5], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 127, -1], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "scalar_f64": torch.tensor(3.25, dtype=torch.float64),
        "expanded": torch.randn(3, 1).expand(3, 4),
    }


def parameters():
    """(f): nn.Parameter pickles through torch._utils._rebuild_parameter."""
    return {
        "weight": nn.Parameter(torch.randn(3, 4)),
        "frozen": nn.Parameter(torch.randn(2), requires_grad=False),
        "leaf": torch.randn(2, requires_grad=True),
    }


def legacy_container(main_pickle):
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, sys_info))
    return head + main_pickle + pickle.dumps([], protocol=2)


def evil_pickle(marker):
    cmd = f"touch {marker}".encode()
    return (
        b"\x80\x02}q\x00X\x0a\x00\x00\x00state_dictq\x01cos\nsystem\nq\x02X"
        + struct.pack("<I", len(cmd))
        + cmd
        + b"q\x03\x85q\x04Rq\x05s."
    )


def write_zip(path, prefix, records):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in records:
            z.writestr(f"{prefix}/{name}", data)


def main():
    out_dir = sys.argv[1]
    torch.manual_seed(0)
    files, hostile, broken = [], [], []

    def save(name, obj, state_dict_keys=None, tensor_dict_keys=None, **kwargs):
        torch.save(obj, os.path.join(out_dir, name), **kwargs)
        files.append(
            {
                "name": name,
                "loader": "torch",
                "entries": walk(obj, [], []),
                "state_dict_keys": state_dict_keys,
                "tensor_dict_keys": tensor_dict_keys,
            }
        )

    s3d = s3d_checkpoint()
    s3d_keys = list(s3d["state_dict"].keys())
    save("s3d_glosscls.pth.tar", s3d, state_dict_keys=s3d_keys)
    save("s3d_glosscls_legacy.pth.tar", s3d, state_dict_keys=s3d_keys, _use_new_zipfile_serialization=False)
    slrt = slrt_checkpoint()
    slrt_keys = list(slrt["model_state"].keys())
    save("best.ckpt", slrt, state_dict_keys=slrt_keys)
    save("best_legacy.ckpt", slrt, state_dict_keys=slrt_keys, _use_new_zipfile_serialization=False)
    gloss = gloss_embeddings()
    save("gloss_embeddings.bin", gloss, tensor_dict_keys=list(gloss))
    save("gloss_embeddings_legacy.bin", gloss, tensor_dict_keys=list(gloss), _use_new_zipfile_serialization=False)
    dt = dtypes()
    save("dtypes.pt", dt, state_dict_keys=list(dt))
    save("dtypes_legacy.pt", dt, state_dict_keys=list(dt), _use_new_zipfile_serialization=False)
    save("dtypes_p4.pt", dt, pickle_protocol=4)
    save("dtypes_legacy_p5.pt", dt, pickle_protocol=5, _use_new_zipfile_serialization=False)
    params = parameters()
    save("params.pt", params)
    save("params_legacy.pt", params, _use_new_zipfile_serialization=False)

    # Whole modules (torch.save(model)): legacy files name the class through a persistent id.
    linear = nn.Linear(2, 3)
    save("whole_module.pt", linear)
    save("whole_module_legacy.pt", linear, _use_new_zipfile_serialization=False)

    # Plain pickles of tensors (like the reference's annotation files): storages embedded with
    # torch.storage._load_from_bytes.
    sample = {"name": "train/x", "sign": torch.randn(3, 4), "num_frames": 12, "empty": torch.zeros(0)}
    for protocol in (2, 4):
        name = f"plain_p{protocol}.pkl"
        with open(os.path.join(out_dir, name), "wb") as f:
            pickle.dump(sample, f, protocol=protocol)
        files.append({"name": name, "loader": "pickle", "entries": walk(sample, [], [])})

    # Hostile files: a pickled os.system call, bare, in a legacy container and in a zip.
    marker = os.path.join(out_dir, "PWNED")
    evil = evil_pickle(marker)
    with open(os.path.join(out_dir, "evil.pkl"), "wb") as f:
        f.write(evil)
    with open(os.path.join(out_dir, "evil_legacy.pt"), "wb") as f:
        f.write(legacy_container(evil))
    write_zip(os.path.join(out_dir, "evil.pth"), "evil", [("data.pkl", evil), ("byteorder", "little"), ("version", "3\n")])
    hostile = [
        {"name": "evil.pkl", "loader": "pickle"},
        {"name": "evil.pkl", "loader": "torch"},
        {"name": "evil_legacy.pt", "loader": "torch"},
        {"name": "evil.pth", "loader": "torch"},
    ]

    # Damaged zips: a storage removed, a storage's bytes flipped, big-endian byteorder.
    src = os.path.join(out_dir, "s3d_glosscls.pth.tar")
    with zipfile.ZipFile(src) as z:
        records = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    prefix = records[0][0].split("/")[0]

    def rewrite(name, change):
        with zipfile.ZipFile(os.path.join(out_dir, name), "w", compression=zipfile.ZIP_STORED) as z:
            for filename, data in records:
                data = change(filename, data)
                if data is not None:
                    z.writestr(filename, data)

    rewrite("missing_storage.pth.tar", lambda n, d: None if n == f"{prefix}/data/0" else d)
    broken.append(
        {
            "name": "missing_storage.pth.tar",
            "message": "missing_storage.pth.tar: state_dict['backbone.base.0.conv_s.weight']: storage '0' missing from the archive",
        }
    )
    rewrite("short_storage.pth.tar", lambda n, d: d[:-4] if n == f"{prefix}/data/0" else d)
    broken.append({"name": "short_storage.pth.tar", "message": "storage '0' has 2348 bytes, too few for 588 elements"})
    rewrite("big_endian.pth.tar", lambda n, d: b"big" if n == f"{prefix}/byteorder" else d)
    broken.append({"name": "big_endian.pth.tar", "message": "only little-endian"})
    # Flip one byte inside storage 1's data: the CRC check must catch it.
    data_crc = os.path.join(out_dir, "bad_crc.pth.tar")
    with open(src, "rb") as f:
        raw = bytearray(f.read())
    with zipfile.ZipFile(src) as z:
        info = z.getinfo(f"{prefix}/data/1")
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len] ^= 0xFF
    with open(data_crc, "wb") as f:
        f.write(raw)
    broken.append({"name": "bad_crc.pth.tar", "message": "CRC-32 mismatch"})

    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"files": files, "hostile": hostile, "broken": broken, "marker": marker}, f)


if __name__ == "__main__":
    main()
