"""An independent reference for sentence embeddings: the published BERT forward pass written in numpy (float64),
mean pooling and L2 normalisation, reading a sentence-transformers folder directly (safetensors parsed by hand,
tokenization by Hugging Face's `tokenizers`). Usage: embed_reference.py MODEL_DIR < texts.json > vectors.json
(a JSON list of strings in, a JSON list of vectors out)."""

import json
import math
import struct
import sys

import numpy as np
from tokenizers import Tokenizer

folder = sys.argv[1]


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":  # position_ids (I64) is not a weight
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"]).astype(np.float64)
    return out


cfg = json.load(open(f"{folder}/config.json"))
W = load_safetensors(f"{folder}/model.safetensors")
H, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
tok.no_truncation()
tok.no_padding()  # the file pads to 128; the attention mask would then exclude the padding
erf = np.vectorize(math.erf)


def layer_norm(x, name):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * W[name + ".weight"] + W[name + ".bias"]


def linear(x, name):
    return x @ W[name + ".weight"].T + W[name + ".bias"]


def embed(text):
    ids = tok.encode(text).ids
    n = len(ids)
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:n] \
        + W["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, "embeddings.LayerNorm")
    d = H // heads
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        q, k, v = (linear(x, p + f"attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, H)
        x = layer_norm(linear(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        up = linear(x, p + "intermediate.dense")
        up = 0.5 * up * (1 + erf(up / math.sqrt(2)))
        x = layer_norm(linear(up, p + "output.dense") + x, p + "output.LayerNorm")
    v = x.mean(0)
    return (v / np.linalg.norm(v)).tolist()


json.dump([embed(t) for t in json.load(sys.stdin)], sys.stdout)
