"""Client compatibility: the official `openai` and `ollama` Python packages, unmodified, against a running
Hearth daemon. Usage: clients.py BASE_URL API_KEY MODEL EMBEDDING_MODEL. Exits non-zero on the first failure."""

import math
import sys

import ollama
import openai

base, key, model, embedder = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
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
two = oa.chat.completions.create(model=model, messages=hello["messages"], max_tokens=4, n=2, seed=3)
check([ch.index for ch in two.choices] == [0, 1], f"n=2: {two}")
many = oa.completions.create(model=model, prompt=["1, 2, 3,", "a, b, c,"], max_tokens=3, temperature=0)
check([ch.index for ch in many.choices] == [0, 1] and many.choices[1].text.startswith(" d"), f"prompts: {many}")
streamed = "".join(x.choices[0].text for x in oa.completions.create(
    model=model, prompt="1, 2, 3,", max_tokens=6, temperature=0, stream=True) if x.choices)
check(streamed == c.choices[0].text, f"completion stream: {streamed!r}")

# Log-probabilities as the SDK's types read them: one entry per token of the answer, greedy picks the likeliest.
lp = oa.chat.completions.create(**hello, logprobs=True, top_logprobs=2)
content = lp.choices[0].logprobs.content
check(b"".join(bytes(t.bytes) for t in content).decode() == lp.choices[0].message.content, f"logprobs: {content}")
check(all(len(t.top_logprobs) == 2 and t.logprob <= 0 and t.top_logprobs[0].token == t.token for t in content),
      f"top_logprobs: {content}")
check(all(sum(math.exp(a.logprob) for a in t.top_logprobs) <= 1 + 1e-4 for t in content), "probabilities sum to ≤ 1")
streamed = [t for x in oa.chat.completions.create(**hello, logprobs=True, stream=True)
            if x.choices and x.choices[0].logprobs for t in x.choices[0].logprobs.content]
check([t.token for t in streamed] == [t.token for t in content], f"streamed logprobs: {streamed}")
lc = oa.completions.create(model=model, prompt="1, 2, 3,", max_tokens=6, temperature=0, logprobs=2)
check("".join(lc.choices[0].logprobs.tokens) == lc.choices[0].text and
      len(lc.choices[0].logprobs.top_logprobs) == len(lc.choices[0].logprobs.token_logprobs), f"legacy: {lc}")

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


# Structured outputs the way the SDKs do them: a pydantic model turned into a strict JSON Schema.
from pydantic import BaseModel


class Cat(BaseModel):
    name: str
    age: int
    indoor: bool


done = oa.chat.completions.parse(model=model, messages=[{"role": "user", "content": "Describe a cat."}],
                                 response_format=Cat, max_tokens=200, temperature=0)
check(isinstance(done.choices[0].message.parsed, Cat), f"parse: {done.choices[0].message}")

# Tool calling the way agent frameworks do it: a strict pydantic function tool, a forced call parsed by the SDK,
# the call and its result sent back, and the same call streamed.
class GetWeather(BaseModel):
    city: str
    celsius: bool


weather_tool = openai.pydantic_function_tool(GetWeather)
ask = [{"role": "user", "content": "What is the weather in Oslo?"}]
done = oa.chat.completions.parse(model=model, messages=ask, tools=[weather_tool], tool_choice="required",
                                 max_tokens=100, temperature=0)
msg = done.choices[0].message
check(done.choices[0].finish_reason == "tool_calls" and len(msg.tool_calls) == 1, f"tool call: {done}")
call = msg.tool_calls[0]
check(call.function.name == "GetWeather" and isinstance(call.function.parsed_arguments, GetWeather),
      f"parsed arguments: {call}")
# As most code does it: the response's message object itself goes back into the conversation.
plain = oa.chat.completions.create(model=model, messages=ask, tools=[weather_tool], tool_choice="required",
                                   max_tokens=100, temperature=0).choices[0].message
follow = oa.chat.completions.create(
    model=model, max_tokens=20, temperature=0, tools=[weather_tool],
    messages=ask + [plain, {"role": "tool", "tool_call_id": plain.tool_calls[0].id, "content": "12 degrees, rain"}])
check(follow.choices[0].message.content and follow.choices[0].finish_reason in ("stop", "length"),
      f"answer after the result: {follow}")
name, args = "", ""
for chunk in oa.chat.completions.create(model=model, messages=ask, tools=[weather_tool], tool_choice="required",
                                        max_tokens=100, temperature=0, stream=True):
    for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
        name += tc.function.name or ""
        args += tc.function.arguments or ""
check(name == "GetWeather" and GetWeather.model_validate_json(args), f"streamed call: {name} {args}")

# Embeddings: the SDK asks for base64 by default and decodes it; the result is the model's unit vectors.
emb = oa.embeddings.create(model=embedder, input=["The weather is lovely today.", "It's so sunny outside!"])
vecs = [d.embedding for d in emb.data]
check(len(vecs) == 2 and all(len(v) == 384 for v in vecs), f"embeddings: {len(vecs)}")
check(abs(sum(a * a for a in vecs[0]) - 1) < 1e-4, "unit vectors")
check(abs(sum(a * b for a, b in zip(*vecs)) - 0.666) < 2e-3, "the documented similarity")
check(emb.usage.prompt_tokens == emb.usage.total_tokens > 0, f"embedding usage: {emb.usage}")
floats = oa.embeddings.create(model=embedder, input="The weather is lovely today.", encoding_format="float")
check(max(abs(a - b) for a, b in zip(floats.data[0].embedding, vecs[0])) < 1e-6, "float and base64 agree")

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
olp = ol.chat(model=model, messages=[{"role": "user", "content": "Say hello."}], logprobs=True, top_logprobs=3,
              options={"temperature": 0, "num_predict": 8})
check("".join(t.token for t in olp.logprobs) == olp.message.content and
      all(len(t.top_logprobs) == 3 for t in olp.logprobs), f"ollama logprobs: {olp.logprobs}")

g = ol.generate(model=model, prompt="1, 2, 3,", raw=True, options={"temperature": 0, "num_predict": 6, "seed": 1})
check(g.response.startswith(" 4"), f"ollama generate: {g.response!r}")
check(any(m.model == model for m in ol.ps().models), "ollama ps")

cat = ol.chat(model=model, messages=[{"role": "user", "content": "Describe a cat."}], format=Cat.model_json_schema(),
              options={"temperature": 0, "num_predict": 200})
check(isinstance(Cat.model_validate_json(cat.message.content), Cat), f"ollama format schema: {cat.message.content}")



def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
      city: the city's name
    """
    return "12 degrees, rain"


# The ollama client turns a Python function into a tool; the model decides, and whatever it does is well-formed.
told = ol.chat(model=model, messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
               tools=[get_weather], options={"temperature": 0, "num_predict": 100})
for tc in told.message.tool_calls or []:
    check(tc.function.name == "get_weather" and isinstance(tc.function.arguments, dict), f"ollama call: {tc}")
check(told.message.tool_calls or told.message.content, f"ollama tools answer: {told}")

# Model management as Open WebUI's model page does it (admin key): copy, then delete the copy.
ol.copy(model, "compat-copy")
check(any(m.model == "compat-copy" for m in ol.list().models), "ollama copy")
ol.delete("compat-copy")
# Pulls as `ollama pull` does (the test's catalog serves the demo model over plain http: insecure, as Ollama's flag).
steps = [p.status for p in ol.pull("compat-pulled", insecure=True, stream=True)]
check(steps[0] == "pulling manifest" and steps[-1] == "success", f"ollama pull progress: {steps}")
check(ol.pull("compat-pulled", insecure=True).status == "success", "ollama pull again")
check(any(m.model == "compat-pulled" for m in ol.list().models), "pulled model listed")
try:
    ol.pull("compat-pulled")
    check(False, "a digest-less http entry pulled without insecure")
except ollama.ResponseError as e:
    check(e.status_code == 400 and "insecure" in str(e), f"pull without insecure: {e}")
ol.delete("compat-pulled")
made = ol.create(model="compat-terse", from_=model, system="You are terse.", parameters={"num_predict": 3})
check(made.status == "success", f"ollama create: {made}")
shown = ol.show("compat-terse")
check(shown.details.parent_model == model and "num_predict 3" in shown.parameters, f"created model: {shown}")
short = ol.chat(model="compat-terse", messages=[{"role": "user", "content": "Tell me a story."}])
check(short.eval_count <= 3, f"the created model's default num_predict: {short}")
ol.delete("compat-terse")

# Reasoning, split from the answer as both SDKs read it: a model made (create) with a Qwen3-style thinking template.
THINKING = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
            "enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n{% endif %}{% endif %}")
ol.create(model="compat-thinker", from_=model, template=THINKING)
check("thinking" in ol.show("compat-thinker").capabilities, "thinking capability")
ask = [{"role": "user", "content": "What is 2+2?"}]
thought = oa.chat.completions.create(model="compat-thinker", messages=ask, max_tokens=16, temperature=0)
check((thought.choices[0].message.model_extra or {}).get("reasoning_content"), f"reasoning_content: {thought}")
streamed = "".join((x.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                   for x in oa.chat.completions.create(model="compat-thinker", messages=ask, max_tokens=16,
                                                        temperature=0, stream=True) if x.choices)
check(streamed == thought.choices[0].message.model_extra["reasoning_content"], f"streamed thoughts: {streamed!r}")
ot = ol.chat(model="compat-thinker", messages=ask, think=True, options={"temperature": 0, "num_predict": 16})
check(ot.message.thinking, f"ollama thinking: {ot.message}")
off = ol.chat(model="compat-thinker", messages=ask, think=False, options={"temperature": 0, "num_predict": 16})
check(not off.message.thinking, f"think false: {off.message}")
ol.delete("compat-thinker")
check(not any(m.model == "compat-copy" for m in ol.list().models), "ollama delete")

e = ol.embed(model=embedder, input=["The weather is lovely today.", "He drove to the stadium."])
check(len(e.embeddings) == 2 and abs(sum(a * b for a, b in zip(*e.embeddings)) - 0.105) < 2e-3,
      "ollama embed")
check(len(ol.embeddings(model=embedder, prompt="hello").embedding) == 384, "ollama embeddings")

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


# --- no silent drops: every field of the clients' own request types is acted on or refused by name ---
# The field lists come from the installed clients (their TypedDicts and pydantic models), not from Hearth; each
# field is sent alone with a well-typed value. Accepted fields must be exactly the ones docs/api.md says Hearth
# acts on; every other one must be a 400 whose error names it.
import typing

from openai.types import completion_create_params as text_params
from openai.types.chat import completion_create_params as chat_params
import openai.types.chat as chat_types
import ollama._types as ol_types

SAMPLE = {
    "audio": {"voice": "alloy", "format": "wav"}, "frequency_penalty": 0.1, "function_call": "auto",
    "functions": [{"name": "f", "parameters": {"type": "object"}}], "logit_bias": {"1": 0.5}, "logprobs": True,
    "max_completion_tokens": 1, "max_tokens": 1, "metadata": {"a": "b"}, "modalities": ["text"], "n": 1,
    "parallel_tool_calls": True, "prediction": {"type": "content", "content": "x"}, "presence_penalty": 0.1,
    "prompt_cache_key": "k", "prompt_cache_retention": "24h", "reasoning_effort": "low",
    "response_format": {"type": "json_object"}, "safety_identifier": "s", "seed": 1, "service_tier": "auto",
    "stop": ["\n\n"], "store": True, "stream_options": {"include_usage": True}, "temperature": 0.5,
    "tool_choice": "auto", "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "top_logprobs": 2, "top_p": 0.5, "user": "u", "verbosity": "low", "web_search_options": {},
    "best_of": 1, "echo": True, "suffix": "x",
    # message members
    "name": "alice", "refusal": "no", "tool_calls": [{"id": "c1", "type": "function",
                                                      "function": {"name": "f", "arguments": "{}"}}],
    "tool_call_id": "c1",
}
ACTED_CHAT = {"frequency_penalty", "logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "messages",
              "model", "n", "parallel_tool_calls", "presence_penalty", "response_format", "seed", "stop",
              "stream_options", "temperature", "tool_choice", "tools", "top_p", "user"}
ACTED_TEXT = {"frequency_penalty", "logit_bias", "logprobs", "max_tokens", "model", "n", "presence_penalty", "prompt",
              "seed", "stop", "stream_options", "temperature", "top_p", "user"}
ACTED_MESSAGE = {"content", "role", "name", "tool_calls", "tool_call_id"}


def outcome(call, field):
    """'acted' for a 200, 'refused' for a 400 naming the field; anything else fails the walk."""
    try:
        call()
        return "acted"
    except (openai.BadRequestError, ollama.ResponseError) as e:
        status = getattr(e, "status_code", None)
        body = getattr(e, "body", None) or {}
        text = str(e)
        named = (isinstance(body, dict) and body.get("param") == field) or f"'{field}'" in text
        check(status == 400 and named, f"{field}: a 400 naming it, got {status} {text}")
        return "refused"


def hello_messages():
    return [{"role": "user", "content": "Hi"}]


def chat_field(f):
    if f in ("model", "messages"):
        return lambda: oa.chat.completions.create(model=model, messages=hello_messages(), max_tokens=1)
    extra = {f: SAMPLE[f]}
    if f == "stream_options":
        return lambda: list(oa.chat.completions.create(model=model, messages=hello_messages(), max_tokens=1,
                                                       stream=True, **extra))
    if f not in ("max_tokens", "max_completion_tokens"):
        extra["max_tokens"] = 1
    if f in ("tool_choice", "parallel_tool_calls"):  # both go with tools, as in OpenAI's API
        extra["tools"] = SAMPLE["tools"]
    if f == "response_format":
        return lambda: oa.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Reply in JSON."}], **extra)
    return lambda: oa.chat.completions.create(model=model, messages=hello_messages(), **extra)


fields = sorted(typing.get_type_hints(chat_params.CompletionCreateParamsBase))
acted = {f for f in fields if outcome(chat_field(f), f) == "acted"}
check(acted == ACTED_CHAT, f"chat fields acted on: {sorted(acted)}, documented: {sorted(ACTED_CHAT)}")


TEXT_SAMPLE = {"logprobs": 2}  # a count here, a switch in chat


def text_field(f):
    extra = {} if f in ("model", "prompt") else {f: TEXT_SAMPLE.get(f, SAMPLE[f])}
    if f != "max_tokens":
        extra["max_tokens"] = 1
    if f == "stream_options":
        return lambda: list(oa.completions.create(model=model, prompt="1,", stream=True, **extra))
    return lambda: oa.completions.create(model=model, prompt="1,", **extra)


fields = sorted(typing.get_type_hints(text_params.CompletionCreateParamsBase))
acted = {f for f in fields if outcome(text_field(f), f) == "acted"}
check(acted == ACTED_TEXT, f"completion fields acted on: {sorted(acted)}, documented: {sorted(ACTED_TEXT)}")

# The deprecated `function` role is refused as a whole (by its role).
check(outcome(lambda: oa.chat.completions.create(model=model, max_tokens=1, messages=[
    {"role": "function", "name": "f", "content": "1"}, {"role": "user", "content": "Hi"}]),
    "messages[0].role") == "refused", "function role")
for kind in ("System", "Developer", "User", "Assistant", "Tool"):
    members = typing.get_type_hints(getattr(chat_types, f"ChatCompletion{kind}MessageParam"))
    role = kind.lower()
    for f in sorted(members):
        if f in ("role", "content"):
            continue
        msg = {"role": role, "content": "Hi", f: SAMPLE[f]}
        msgs = [msg, {"role": "user", "content": "Hi"}]
        at = 0
        if role == "tool":  # a tool message answers a call an earlier assistant message made
            msgs.insert(0, {"role": "assistant", "content": None, "tool_calls": SAMPLE["tool_calls"]})
            at = 1
        r = outcome(lambda: oa.chat.completions.create(model=model, messages=msgs, max_tokens=1),
                    f"messages[{at}].{f}")
        check((r == "acted") == (f in ACTED_MESSAGE),
              f"{role} message member {f}: {r}")

OL_SAMPLE = {
    "format": "json", "keep_alive": "1m", "logprobs": True, "top_logprobs": 2, "stream": False, "think": True,
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "context": [1, 2, 3], "images": ["iVBORw0KGgo="], "raw": True, "suffix": "x", "system": "Be brief.",
    "template": "{{ .Prompt }}",
}
OL_OPTION = {"embedding_only": False, "f16_kv": True, "frequency_penalty": 0.1, "logits_all": False,
             "low_vram": False, "main_gpu": 0, "mirostat": 1, "mirostat_eta": 0.1, "mirostat_tau": 5.0,
             "num_batch": 8, "num_ctx": 256, "num_gpu": 0, "num_keep": 4, "num_predict": 1, "num_thread": 2,
             "numa": False, "penalize_newline": True, "presence_penalty": 0.1, "repeat_last_n": 8,
             "repeat_penalty": 1.1, "seed": 1, "stop": ["\n\n"], "temperature": 0.5, "tfs_z": 1.0, "top_k": 5,
             "top_p": 0.5, "typical_p": 0.5, "use_mlock": False, "use_mmap": True, "vocab_only": False}
ACTED_OL_CHAT = {"format", "keep_alive", "logprobs", "messages", "model", "options", "stream", "tools"}
ACTED_OL_GENERATE = {"format", "keep_alive", "logprobs", "model", "options", "prompt", "raw", "stream", "system"}
ACTED_OL_OPTION = {"frequency_penalty", "num_ctx", "num_predict", "presence_penalty", "repeat_last_n",
                   "repeat_penalty", "seed", "stop", "temperature", "top_k", "top_p"}
quick = {"num_predict": 1}


def ol_call(endpoint, f):
    if endpoint == "chat":
        base_args = {"model": model, "messages": hello_messages(), "options": quick, "stream": False}
    else:
        base_args = {"model": model, "prompt": "1,", "options": quick, "stream": False}
    if f not in base_args:
        base_args[f] = OL_SAMPLE[f]
    fn = ol.chat if endpoint == "chat" else ol.generate
    return lambda: fn(**base_args)


for endpoint, request_type, documented in (("chat", ol_types.ChatRequest, ACTED_OL_CHAT),
                                           ("generate", ol_types.GenerateRequest, ACTED_OL_GENERATE)):
    fields = sorted(request_type.model_fields)
    acted = {f for f in fields if outcome(ol_call(endpoint, f), f) == "acted"}
    check(acted == documented, f"ollama {endpoint} fields acted on: {sorted(acted)}, documented: {sorted(documented)}")

acted = set()
for f in sorted(ol_types.Options.model_fields):
    opts = {"num_predict": 1, f: OL_OPTION[f]}
    if outcome(lambda: ol.generate(model=model, prompt="1,", options=opts, stream=False), f"options.{f}") == "acted":
        acted.add(f)
check(acted == ACTED_OL_OPTION, f"ollama options acted on: {sorted(acted)}, documented: {sorted(ACTED_OL_OPTION)}")

OL_MESSAGE = {"images": ["iVBORw0KGgo="], "thinking": "hmm", "tool_name": "f",
              "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}
OL_MESSAGE_ROLE = {"tool_name": "tool", "tool_calls": "assistant"}
ACTED_OL_MESSAGE = {"tool_name", "tool_calls"}
for f in sorted(ol_types.Message.model_fields):
    if f in ("role", "content"):
        continue
    msgs = [{"role": OL_MESSAGE_ROLE.get(f, "user"), "content": "Hi", f: OL_MESSAGE[f]},
            {"role": "user", "content": "Hi"}]
    r = outcome(lambda: ol.chat(model=model, messages=msgs, options=quick, stream=False), f"messages[0].{f}")
    check((r == "acted") == (f in ACTED_OL_MESSAGE), f"ollama message member {f}: {r}")

print(f"clients.py: {checks} checks passed (openai {openai.__version__}, ollama)")
