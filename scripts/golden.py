"""Reference outputs from llama.cpp for Hearth's engine tests: token ids, teacher-forced logits, greedy text.

usage: golden.py MODELS_DIR OUT_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama

MODELS = {
    "smollm2": "SmolLM2-135M-Instruct-Q4_1.gguf",
    "gemma3": "gemma-3-270m-Q4_K_M.gguf",
}

BASE = [
    "Hello, world!", "hello world", "HELLO WORLD", " leading space", "trailing space ", "  two leading",
    "double  space", "tabs\tand\ttabs", "new\nline", "windows\r\nline", "\n\n\nthree newlines", "    indented",
    "The quick brown fox jumps over the lazy dog.", "It's, we're, they've, I'm, you'll, he'd",
    "1234567890", "3.14159", "1,000,000", "$100.00", "+49 (0) 30 1234-5678", "2026-11-28T12:34:56Z",
    "e = mc^2", "x_1 + x_2 = y", "a/b/c", "C:\\Windows\\System32", "https://example.com/path?q=1&r=2",
    "user@example.com", "#hashtag @mention", "snake_case_name", "camelCaseName", "PascalCaseName",
    "kebab-case-name", "SCREAMING_SNAKE", "def f(x):\n    return x * 2\n", "fn main() { println!(\"hi\"); }",
    "for (int i = 0; i < n; ++i) {}", "<div class=\"x\">text</div>", "{\"key\": [1, 2, 3]}", "SELECT * FROM t;",
    "Grüße aus Köln", "naïve café résumé", "Ærøskøbing", "Ελληνικά", "Русский текст", "日本語のテキスト",
    "中文文本", "한국어 텍스트", "עברית", "العربية", "हिन्दी", "ไทย", "Tiếng Việt", "emoji 🙂", "🚀🚀🚀",
    "👨‍👩‍👧‍👦 family", "flags 🇩🇪🇫🇷", "mixed 日本 and English", "zero\u200bwidth", "non\u00a0breaking",
    "ﬁ ligature", "…ellipsis…", "“quotes” and ‘single’", "— em dash –", "°C ± µ", "∑∫∂√∞", "←↑→↓",
    "", " ", "  ", "\n", "\t", "a", "ab", "abc", "A", "I", "?", "!!!", "...", "---", "___", "===",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "Supercalifragilisticexpialidocious", "antidisestablishmentarianism", "pneumonoultramicroscopic",
    "The year 1999 and 2000 and 2024.", "Version 1.2.3-beta+build.4", "0x1F 0b1010 0o17",
    "   many     spaces     between   ", "line1\n\nline2\n\n\nline3", "\ttab\n\tindent",
    "Don't stop believing!", "Rock 'n' roll", "O'Reilly's book", "it''s", "''", "\"\"",
]

SPECIALS = {
    "smollm2": ["<|im_start|>user\nHi<|im_end|>\n", "<|endoftext|>", "text<|im_end|>more", "<|im_start|><|im_start|>"],
    "gemma3": ["<start_of_turn>user\nHi<end_of_turn>\n", "<bos>text", "a<end_of_turn>b", "<start_of_turn>model\n"],
}

PROSE = (
    "The history of computing is a story of people trying to make machines do arithmetic faster and more "
    "reliably than they could by hand. Early mechanical calculators, such as the devices built by Pascal and "
    "Leibniz in the seventeenth century, could add and multiply, but they were delicate and expensive. In the "
    "nineteenth century Charles Babbage designed the Analytical Engine, a general-purpose machine with a mill "
    "for calculation and a store for numbers, and Ada Lovelace wrote what many consider the first program for "
    "it. The machine was never finished, yet its ideas returned a century later, when engineers built "
    "electronic computers from vacuum tubes to break codes and compute artillery tables during the Second World "
    "War. Transistors replaced tubes in the 1950s, integrated circuits replaced individual transistors in the "
    "1960s, and the microprocessor put an entire central processing unit on a single chip in 1971. Since then "
    "the number of transistors on a chip has doubled roughly every two years, and computers have moved from "
    "laboratories into offices, homes, pockets and even light bulbs. Today a small language model can run on a "
    "home server, answering questions for a family without sending a single word to the cloud. Running such a "
    "model well requires careful attention to memory bandwidth, because generating each token means reading "
    "every weight of the network once, and to arithmetic precision, because quantized weights trade a little "
    "accuracy for a large saving in memory and time."
)

GREEDY_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colors are",
    "Water boils at a temperature of",
    "My favourite recipe for pancakes starts with",
    "1, 2, 3, 4, 5,",
    "Photosynthesis is the process by which",
    "In 1969, the first humans",
    "The best way to learn a new language is",
]


def variants():
    out = list(BASE)
    words = ["alpha", "Beta", "GAMMA", "δέλτα", "ε", "42", "3.0", "x", "—", "🙂", "ünï", "code()", "a_b", "\n", "  "]
    for i in range(len(words)):
        for j in range(len(words)):
            if (i * 7 + j * 3) % 3 == 0:
                out.append(words[i] + " " + words[j])
                out.append(words[i] + words[j])
    return out


def main():
    models_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, fname in MODELS.items():
        # The most precise llama.cpp configuration (f32 KV cache, no flash attention, whose CPU path accumulates
        # V in f16): differences left are then our arithmetic against theirs, not cache rounding.
        llm = Llama(str(models_dir / fname), n_ctx=1024, n_threads=2, logits_all=True, verbose=False, seed=0,
                    flash_attn=False, type_k=0, type_v=0)
        texts = variants() + SPECIALS[key]
        tok = [{"text": t, "ids": llm.tokenize(t.encode(), add_bos=False, special=True)} for t in texts]
        with_bos = [{"text": t, "ids": llm.tokenize(t.encode(), add_bos=True, special=True)} for t in BASE[:20]]

        prose_ids = llm.tokenize(PROSE.encode(), add_bos=True, special=True)[:300]
        llm.reset()
        llm.eval(prose_ids)
        scores = np.array(llm.scores[: len(prose_ids)])
        top = []
        for row in scores:
            idx = np.argsort(-row)[:8]
            top.append([[int(i), float(row[i])] for i in idx])

        greedy = []
        for p in GREEDY_PROMPTS:
            ids = llm.tokenize(p.encode(), add_bos=True, special=True)
            llm.reset()
            llm.eval(ids)
            out = []
            for _ in range(32):
                t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
                out.append(t)
                llm.eval([t])
            greedy.append({"prompt": p, "prompt_ids": ids, "output_ids": out})

        # How far llama.cpp is from itself: its default configuration (flash attention, f16 KV cache) against the
        # precise one above. Quantized activations make near-ties flip; tests hold Hearth to this same yardstick.
        dflt = Llama(str(models_dir / fname), n_ctx=1024, n_threads=2, logits_all=True, verbose=False, seed=0,
                     flash_attn=True)
        dflt.eval(prose_ids)
        d_scores = np.array(dflt.scores[: len(prose_ids)])
        self_top1 = float((d_scores.argmax(1) == scores.argmax(1)).mean())
        self_identical = 0
        for case in greedy:
            dflt.reset()
            dflt.eval(case["prompt_ids"])
            out = []
            for _ in range(32):
                t = int(np.argmax(dflt.scores[dflt.n_tokens - 1]))
                out.append(t)
                dflt.eval([t])
            self_identical += out == case["output_ids"]

        data = {
            "peer_self_agreement": {"top1": self_top1, "greedy_identical": self_identical},
            "model": fname,
            "reference": "llama.cpp via llama-cpp-python 0.3.36",
            "tokenize": tok,
            "tokenize_with_bos": with_bos,
            "logits": {"tokens": prose_ids, "top8": top},
            "greedy": greedy,
        }
        (out_dir / f"{key}.json").write_text(json.dumps(data, ensure_ascii=False, indent=0))
        print(f"{key}: {len(tok)} tokenizer cases, {len(prose_ids)} logit positions, {len(greedy)} greedy prompts; "
              f"llama.cpp default vs precise: top-1 {self_top1:.3f}, greedy identical {self_identical}/{len(greedy)}")


if __name__ == "__main__":
    main()
