"""Client compatibility: the official `openai` and `ollama` Python packages, unmodified, against a running
Hearth daemon. Usage: clients.py BASE_URL API_KEY MODEL. Exits non-zero on the first failure."""

import sys

import ollama
import openai

base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


# --- openai ---
oa = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
ids = [m.id for m in oa.models.list()]
check(model in ids, f"models.list: {ids}")

hello = dict(
    model=model,
    messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
    max_tokens=8,
    temperature=0,
    seed=1,
)
r = oa.chat.completions.create(**hello)
text = r.choices[0].message.content
check(isinstance(text, str) and text, f"chat content: {r}")
check(r.choices[0].finish_reason in ("stop", "length"), f"finish_reason: {r.choices[0].finish_reason}")
check(r.usage.completion_tokens >= 1 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens,
      f"usage: {r.usage}")
# The same conversation again: its prompt is reused from the slot (all but the last token) and reported as cached.
again = oa.chat.completions.create(**hello)
check(again.choices[0].message.content == text, f"same answer from the reused prefix: {again}")
check(again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1, f"cached: {again.usage}")

parts, usage = [], None
for chunk in oa.chat.completions.create(
    model=model,
    messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}],
    max_tokens=8,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
check("".join(parts) == text, f"stream {''.join(parts)!r} != {text!r}")
check(usage is not None and usage.completion_tokens == r.usage.completion_tokens, f"stream usage: {usage}")

c = oa.completions.create(model=model, prompt="1, 2, 3,", max_tokens=6, temperature=0)
check(c.choices[0].text.startswith(" 4"), f"completion: {c.choices[0].text!r}")
streamed = "".join(x.choices[0].text for x in oa.completions.create(
    model=model, prompt="1, 2, 3,", max_tokens=6, temperature=0, stream=True) if x.choices)
check(streamed == c.choices[0].text, f"completion stream: {streamed!r}")

try:
    openai.OpenAI(base_url=base + "/v1", api_key="hth_wrong", max_retries=0).models.list()
    check(False, "bad key accepted")
except openai.AuthenticationError as e:
    check(e.status_code == 401, "bad key status")

try:
    oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check(False, "unknown model accepted")
except openai.NotFoundError as e:
    check(e.code == "model_not_found", f"unknown model code: {e.code}")

try:
    oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=10**6)
    check(False, "context overflow accepted")
except openai.BadRequestError as e:
    check(e.code == "context_length_exceeded", f"overflow code: {e.code}")


# Files + Batch API: upload a JSONL file, run it as a batch, read the output file.
import io
import json
import time

lines = [json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                     "body": {"model": model, "messages": [{"role": "user", "content": f"Count to {i + 2}."}],
                              "max_tokens": 6, "temperature": 0}}) for i in range(3)]
f = oa.files.create(file=("batch.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
check(f.purpose == "batch" and f.bytes > 0, f"files.create: {f}")
b = oa.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                      metadata={"job": "compat"})
check(b.status in ("validating", "in_progress") and b.metadata == {"job": "compat"}, f"batches.create: {b}")
for _ in range(600):
    b = oa.batches.retrieve(b.id)
    if b.status in ("completed", "failed", "cancelled", "expired"):
        break
    time.sleep(0.1)
check(b.status == "completed" and b.request_counts.completed == 3 and b.request_counts.failed == 0, f"batch: {b}")
out = [json.loads(l) for l in oa.files.content(b.output_file_id).text.splitlines()]
check(sorted(o["custom_id"] for o in out) == ["q0", "q1", "q2"], f"output ids: {out}")
check(all(o["response"]["status_code"] == 200 and o["response"]["body"]["choices"][0]["message"]["content"]
          for o in out), f"output bodies: {out}")
check(any(x.id == b.id for x in oa.batches.list(limit=5).data), "batches.list")
check(oa.files.retrieve(f.id).filename == "batch.jsonl", "files.retrieve")

# --- ollama ---
ol = ollama.Client(host=base, headers={"Authorization": f"Bearer {key}"})
names = [m.model for m in ol.list().models]
check(model in names, f"ollama list: {names}")
check(ol.show(model).details.format == "gguf", "ollama show")

resp = ol.chat(model=model, messages=[{"role": "user", "content": "Say hello."}],
               options={"temperature": 0, "num_predict": 8})
check(resp.message.role == "assistant" and resp.message.content, f"ollama chat: {resp}")
check(resp.done and resp.eval_count >= 1 and resp.prompt_eval_count >= 1, f"ollama chat counts: {resp}")

pieces = list(ol.chat(model=model, messages=[{"role": "user", "content": "Say hello."}],
                      options={"temperature": 0, "num_predict": 8}, stream=True))
check(pieces[-1].done and pieces[-1].done_reason in ("stop", "length"), f"ollama stream end: {pieces[-1]}")
check("".join(p.message.content for p in pieces) == resp.message.content, "ollama stream text")

g = ol.generate(model=model, prompt="1, 2, 3,", raw=True, options={"temperature": 0, "num_predict": 6, "seed": 1})
check(g.response.startswith(" 4"), f"ollama generate: {g.response!r}")
check(any(m.model == model for m in ol.ps().models), "ollama ps")

try:
    ollama.Client(host=base, headers={"Authorization": "Bearer hth_wrong"}).list()
    check(False, "ollama bad key accepted")
except ollama.ResponseError as e:
    check(e.status_code == 401, f"ollama bad key status {e.status_code}")
try:
    ol.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    check(False, "ollama unknown model accepted")
except ollama.ResponseError as e:
    check(e.status_code == 404, f"ollama unknown model status {e.status_code}")

print(f"clients.py: {checks} checks passed (openai {openai.__version__}, ollama)")
