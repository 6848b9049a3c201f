#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from the real demo files.

Usage: seeds.py MODELS_DIR CORPUS_DIR

gguf: each demo model shrunk to a loadable toy — every metadata key of the real file (chat template, tokenizer
model, special tokens, rope and norm settings) with the vocabulary cut to its first tokens, one block, small
dimensions, and the real tensor names and types with random weights — plus the real file's first 64 KiB
(a truncated download). A fuzzer cannot mutate a 100 MB file usefully; these keep every real key in play.
tokenizer, chat_template, request_body, json_mode: real templates, texts and request bodies.
Python's standard library only.
"""
import json
import os
import random
import struct
import sys

# type -> (elements per block, bytes per block), for the tensor types the demo files use.
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 10: (256, 84),
          11: (256, 110), 12: (256, 144), 13: (256, 176),
          14: (256, 210), 30: (1, 2)}
VOCAB = 300


class Reader:
    def __init__(self, data):
        self.d, self.o = data, 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.d, self.o)
        self.o += struct.calcsize("<" + fmt)
        return v[0]

    def string(self):
        n = self.take("Q")
        s = self.d[self.o:self.o + n]
        self.o += n
        return s

    def value(self, t):
        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
        if t in scalar:
            return self.take(scalar[t])
        if t == 8:
            return self.string()
        if t == 9:
            et, n = self.take("I"), self.take("Q")
            return (et, [self.value(et) for _ in range(n)])
        raise ValueError(f"metadata type {t}")


def read(path):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    assert r.d[:4] == b"GGUF", path
    r.o = 4
    version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
    kv = []
    for _ in range(n_kv):
        key = r.string().decode()
        t = r.take("I")
        kv.append((key, t, r.value(t)))
    tensors = []
    for _ in range(n_tensors):
        name = r.string().decode()
        dims = [r.take("Q") for _ in range(r.take("I"))]
        tensors.append((name, dims, r.take("I"), r.take("Q")))
    return version, kv, tensors, data


def write_value(out, t, v):
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    if t in scalar:
        out += struct.pack("<" + scalar[t], v)
    elif t == 8:
        out += struct.pack("<Q", len(v)) + v
    else:
        et, items = v
        out += struct.pack("<IQ", et, len(items))
        for item in items:
            write_value(out, et, item)


def shrink(path, dest, new):
    version, kv, tensors, _ = read(path)
    meta = {k: v for k, _, v in kv}
    arch = meta["general.architecture"].decode()
    old = {
        "embd": meta[f"{arch}.embedding_length"],
        "ff": meta[f"{arch}.feed_forward_length"],
        "vocab": len(meta["tokenizer.ggml.tokens"][1]),
    }
    heads, kv_heads = meta[f"{arch}.attention.head_count"], meta[f"{arch}.attention.head_count_kv"]
    head_dim = meta.get(f"{arch}.attention.key_length", old["embd"] // heads)
    # A real dimension -> its toy size (q and kv widths follow the toy's heads).
    dims = {old["vocab"]: VOCAB, head_dim * kv_heads: new["head_dim"] * new["kv_heads"],
            head_dim: new["head_dim"], head_dim * heads: new["head_dim"] * new["heads"],
            old["ff"]: new["ff"], old["embd"]: new["embd"]}
    tokens = meta["tokenizer.ggml.tokens"][1][:VOCAB]
    kept = set(tokens)
    overrides = {
        f"{arch}.embedding_length": new["embd"], f"{arch}.feed_forward_length": new["ff"],
        f"{arch}.block_count": 1, f"{arch}.attention.head_count": new["heads"],
        f"{arch}.attention.head_count_kv": new["kv_heads"], f"{arch}.attention.key_length": new["head_dim"],
        f"{arch}.attention.value_length": new["head_dim"], f"{arch}.context_length": 256,
        f"{arch}.rope.dimension_count": new["head_dim"],
    }
    out_kv = []
    for key, t, v in kv:
        if key in overrides:
            v = overrides[key]
        elif key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            v = (v[0], v[1][:VOCAB])
        elif key == "tokenizer.ggml.merges":
            keep = []
            for m in v[1]:
                a, _, b = m.partition(b" ")
                if a in kept and b in kept and a + b in kept:
                    keep.append(m)
            v = (v[0], keep)
        out_kv.append((key, t, v))
    rng = random.Random(7)
    out_tensors, blobs = [], []
    for name, shape, ty, _ in tensors:
        if name.startswith("blk.") and not name.startswith("blk.0."):
            continue
        shape = [dims.get(d, d) for d in shape]
        per_block, block_bytes = BLOCKS[ty]
        n = 1
        for d in shape:
            n *= d
        assert shape[0] % per_block == 0, (name, shape, ty)
        size = n // per_block * block_bytes
        if ty == 0:  # F32 (norms): small positive values
            blob = b"".join(struct.pack("<f", 0.5 + rng.random()) for _ in range(n))
        else:  # quantised or half: random bytes with every f16 scale kept small and finite
            blob = bytearray(rng.getrandbits(8) for _ in range(size))
            if ty in (1, 30):
                for i in range(1, size, 2):
                    blob[i] &= 0x3B
            else:
                for i in range(0, size, block_bytes):
                    blob[i + 1] = 0x1C
            blob = bytes(blob)
        out_tensors.append((name, shape, ty, blob))
    align = meta.get("general.alignment", 32)
    out = bytearray(b"GGUF")
    out += struct.pack("<IQQ", version, len(out_tensors), len(out_kv))
    for key, t, v in out_kv:
        write_value(out, 8, key.encode())
        out += struct.pack("<I", t)
        write_value(out, t, v)
    offset = 0
    for name, shape, ty, blob in out_tensors:
        write_value(out, 8, name.encode())
        out += struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ty, offset)
        offset += (len(blob) + align - 1) // align * align
    out += b"\0" * (-len(out) % align)
    for _, _, _, blob in out_tensors:
        out += blob + b"\0" * (-len(blob) % align)
    with open(dest, "wb") as f:
        f.write(out)
    return meta


def main():
    models, corpus = sys.argv[1], sys.argv[2]
    for target in ("gguf", "tokenizer", "chat_template", "json_mode", "request_body"):
        os.makedirs(os.path.join(corpus, target), exist_ok=True)

    def seed(target, name, data):
        with open(os.path.join(corpus, target, name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())

    demos = {
        "smollm2": ("SmolLM2-135M-Instruct-Q4_1.gguf", dict(embd=64, ff=128, heads=2, kv_heads=1, head_dim=32)),
        "gemma3": ("gemma-3-270m-Q4_K_M.gguf", dict(embd=256, ff=256, heads=2, kv_heads=1, head_dim=128)),
    }
    messages = [("system", "You are Hearth."), ("user", "Turn on the kitchen light, please."),
                ("assistant", "Done: the kitchen light is on."), ("user", "Dim it to 40 % — ça va? 🌙")]
    for name, (file, new) in demos.items():
        path = os.path.join(models, file)
        meta = shrink(path, os.path.join(corpus, "gguf", f"{name}-toy.gguf"), new)
        with open(path, "rb") as f:
            seed("gguf", f"{name}-first-64k.gguf", f.read(65536))
        template = meta.get("tokenizer.chat_template", b"").decode()
        if template:
            # chat_template input: the template, NUL, then role NUL content NUL ...
            body = template + "\0" + "\0".join(f"{r}\0{c}" for r, c in messages)
            seed("chat_template", f"{name}.txt", body)
    texts = ["Hello, world!", "  leading spaces\tand tabs\n\nnew lines", "naïve café — 東京 🌙 \u200b",
             "<|im_start|>user\nhi<|im_end|>", "<start_of_turn>model\n", "fn main() { println!(\"{}\", 1 + 2); }",
             "\x00\x01\x7f", "a" * 300]
    for i, t in enumerate(texts):
        seed("tokenizer", f"text-{i}.txt", t)
    seed("tokenizer", "invalid-utf8.bin", b"ok \xff\xfe \xc3( end")
    # Found by the fuzzer: U+8E38E, whose lead byte SmolLM2 lacks, among U+FFFD (byte 0 picks the BPE tokenizer).
    seed("tokenizer", "lost-lead-byte.bin", b"\x00(\xef\xbf\xbd\xf2\x8e\x8e\x8e\xef\xbf\xbd)")
    objects = ['{"a": 1}', '{"name": "light", "on": true, "level": 0.4, "tags": ["kitchen", null], "n": -1.5e3}',
               '{"nested": {"deeper": [{"x": "\\u00e9\\n"}]}}', '{}', '{"a":', '[1, 2]', '"just a string"',
               # Found by the fuzzer: valid JSON that serde_json refuses (its reserved RawValue key).
               '{"$serde_json::private::RawValue": 4444444444444444444.4444444440}',
               # …and that serde_json reads as a number rather than an object.
               '{"$serde_json::private::RawValue":"0e2"}']
    for i, o in enumerate(objects):
        seed("json_mode", f"json-{i}.json", o)
    # request_body input: the first byte picks the body type (see fuzz_targets/request_body.rs), the rest is JSON.
    bodies = [
        (0, {"model": "smollm2", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16,
             "temperature": 0.7, "stop": ["\n"], "stream": True, "stream_options": {"include_usage": True}}),
        (0, {"model": "smollm2", "messages": [{"role": "system", "content": "Be brief."},
             {"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "response_format": {"type": "json_object"},
             "logit_bias": {"42": -100}, "seed": 7}),
        (1, {"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 8, "top_p": 0.9, "n": 1}),
        (2, {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "stream": False,
             "options": {"num_predict": 8, "temperature": 0, "stop": ["."]}, "format": "json", "keep_alive": "5m"}),
        (3, {"model": "smollm2", "prompt": "Why is the sky blue?", "system": "Be brief.", "raw": False,
             "options": {"top_k": 40, "seed": 1}, "keep_alive": 0}),
        (2, {"model": "smollm2", "messages": [], "keep_alive": 1.5e3}),
    ]
    for i, (kind, body) in enumerate(bodies):
        seed("request_body", f"body-{i}.bin", bytes([kind]) + json.dumps(body).encode())


if __name__ == "__main__":
    main()
