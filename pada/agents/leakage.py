"""Keep validation and test questions out of generation prompts and synthetic data.

Two guards:

1. `assert_no_leak(prompt_text, protected_ids, protected_texts)` — called on
   every generation prompt; raises `LeakError` if a protected id or a whole
   protected question (after normalisation) appears in it. Generation
   functions only accept training examples, so this should never fire; it
   exists to catch wiring mistakes in the loop.
2. `LeakageGuard.filter(samples)` — drops synthetic samples whose question
   overlaps a validation/test question: a shared run of >= `ngram_size`
   normalised tokens, or ROUGE-L F >= `rouge_l_threshold`. Returns
   `(kept, dropped)` with the reason for each drop.

Speed: the n-gram check is a dict lookup per candidate n-gram. ROUGE-L runs
only against protected questions that pass an exact upper bound
(LCS <= shared tokens counted with multiplicity, so F <= 2*shared/(m+n)),
computed over a sparse token-count matrix; the LCS itself is the
bit-parallel algorithm (one big-int update per token).

Task templates: every prompt of a task repeats the same instructions, which
are not leakage. Phrases that occur in at least half of the training prompts
(`allowed_texts`; 4-grams by default) are therefore masked out on both sides
before comparing. Masking only *frequent* phrases matters: masking every
phrase seen in training leaves a short instruction plus a common question
ending ("... how many does James have?") as a spurious 13-gram match
(measured on GSM8K: 30 of 500 unrelated training questions were flagged that
way; none with frequency-based masking).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from pada.errors import PadaError
from pada.records import SyntheticSample

_TOKEN = re.compile(r"\w+", re.UNICODE)


class LeakError(PadaError):
    """A validation or test example reached a generation prompt: a bug in the loop's wiring."""


def normalise_tokens(text: str) -> list[str]:
    """Lower-cased word tokens; punctuation and whitespace differences do not matter."""
    return _TOKEN.findall(text.casefold())


class PromptLeakCheck:
    """Protected ids and normalised protected texts, prepared once for many prompt checks."""

    def __init__(self, protected_ids: Iterable[str] = (), protected_texts: Iterable[str] = ()):
        self.ids = [pid for pid in protected_ids if pid]
        self.texts = [t for t in protected_texts]
        self.needles = [" " + " ".join(normalise_tokens(t)) + " " for t in self.texts]

    def __call__(self, prompt_text: str) -> None:
        for pid in self.ids:
            # cheap substring test first; the regex makes sure it is a whole id ("12" is not in "123")
            if pid in prompt_text and re.search(rf"(?<![\w-]){re.escape(pid)}(?![\w-])", prompt_text):
                raise LeakError(f"protected example id {pid!r} appears in a generation prompt; "
                                "only training examples may be shown to the generator")
        haystack = " " + " ".join(normalise_tokens(prompt_text)) + " "
        for text, needle in zip(self.texts, self.needles):
            if needle.strip() and needle in haystack:
                raise LeakError("a protected (validation/test) question appears in a generation prompt: "
                                f"{text[:80]!r}; only training examples may be shown to the generator")


def assert_no_leak(prompt_text: str, protected_ids: Iterable[str] = (),
                   protected_texts: Iterable[str] = ()) -> None:
    """Raise LeakError if a protected id or a whole protected text is inside `prompt_text`.

    Ids match as whole words; texts match after normalisation, so spacing and
    case cannot hide a copy. For many prompts, build a `PromptLeakCheck` once
    (or use `LeakageGuard.assert_no_leak`).
    """
    PromptLeakCheck(protected_ids, protected_texts)(prompt_text)


def lcs_length(a: list[int], b: list[int]) -> int:
    """Length of the longest common subsequence (Hyyrö's bit-parallel algorithm, O(len(b)) big-int steps)."""
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a  # fewer iterations over the shorter sequence
    masks: dict[int, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def rouge_l_f(a: list[int], b: list[int]) -> float:
    """ROUGE-L F1 (beta = 1) between two token-id sequences."""
    if not a or not b:
        return 0.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


@dataclass
class LeakageConfig:
    """Thresholds for calling a synthetic question a copy of a protected one."""

    # 13-gram overlap is the contamination test used for GPT-3 and many later benchmark audits.
    ngram_size: int = field(default=13, metadata={"help": "a shared run of this many normalised tokens is a leak"})
    # 0.7 ROUGE-L is the near-duplicate cut-off used by Self-Instruct-style data filters.
    rouge_l_threshold: float = field(default=0.7, metadata={"help": "ROUGE-L F at or above this is a leak"})
    # Questions shorter than this (after masking template text) are too short to judge by overlap.
    min_tokens: int = field(default=4, metadata={"help": "skip ROUGE-L for questions shorter than this"})
    # Template detection: a 4-gram in at least half the training prompts is instruction text, not content.
    template_ngram_size: int = field(default=4, metadata={"help": "phrase length used to find the task's template text"})
    template_doc_fraction: float = field(default=0.5, metadata={"help": "a phrase in at least this share of the training prompts (and in 2+) is template text"})

    def __post_init__(self) -> None:
        if self.ngram_size < 2:
            raise ValueError(f"ngram_size must be >= 2, got {self.ngram_size}")
        if not 0.0 < self.rouge_l_threshold <= 1.0:
            raise ValueError(f"rouge_l_threshold must be within (0, 1], got {self.rouge_l_threshold}")
        if self.template_ngram_size < 1 or not 0.0 < self.template_doc_fraction <= 1.0:
            raise ValueError("template_ngram_size must be >= 1 and template_doc_fraction within (0, 1]")


@dataclass
class LeakDrop:
    """A synthetic sample the guard removed, and why."""

    sample: SyntheticSample
    protected_id: str
    reason: str  # "ngram" or "rouge_l"
    score: float  # shared n-gram count for "ngram", ROUGE-L F for "rouge_l"


class LeakageGuard:
    """An index over the protected (validation + test) questions.

    Build it once per run: `LeakageGuard(protected={id: question}, allowed_texts=train prompts)`.
    `allowed_texts` are the prompts the generator may see; phrases frequent among them are the
    task's template, masked before comparing.
    """

    def __init__(self, protected: Mapping[str, str], allowed_texts: Iterable[str] = (),
                 config: LeakageConfig | None = None):
        self.config = config or LeakageConfig()
        self.ids = list(protected)
        self.texts = [protected[pid] for pid in self.ids]
        self._vocab: dict[str, int] = {}
        self._template = self._frequent_phrases([normalise_tokens(t) for t in allowed_texts])
        self._docs = [self._content_ids(t) for t in self.texts]
        self._ngram_index = self._build_ngram_index()
        self._counts = self._build_count_matrix()
        self._prompt_check = PromptLeakCheck(self.ids, self.texts)

    # --- building -------------------------------------------------------
    @staticmethod
    def _ngrams(tokens: list[str], n: int) -> Iterable[tuple[str, ...]]:
        return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))

    def _frequent_phrases(self, token_lists: list[list[str]]) -> set[tuple[str, ...]]:
        """Phrases in at least `template_doc_fraction` of the template texts (and in two or more)."""
        n = self.config.template_ngram_size
        doc_freq = Counter(g for tokens in token_lists for g in set(self._ngrams(tokens, n)))
        needed = max(2.0, self.config.template_doc_fraction * len(token_lists))
        return {gram for gram, count in doc_freq.items() if count >= needed}

    def _content_tokens(self, text: str) -> list[str]:
        """Normalised tokens of `text` minus the task's template text."""
        tokens = normalise_tokens(text)
        if not self._template:
            return tokens
        keep = [True] * len(tokens)
        n = self.config.template_ngram_size
        for i, gram in enumerate(self._ngrams(tokens, n)):
            if gram in self._template:
                keep[i:i + n] = [False] * n
        return [tok for tok, k in zip(tokens, keep) if k]

    def _content_ids(self, text: str) -> list[int]:
        return [self._vocab.setdefault(tok, len(self._vocab)) for tok in self._content_tokens(text)]

    def _build_ngram_index(self) -> dict[tuple[int, ...], set[int]]:
        n = self.config.ngram_size
        index: dict[tuple[int, ...], set[int]] = {}
        for doc_idx, ids in enumerate(self._docs):
            for i in range(len(ids) - n + 1):
                index.setdefault(tuple(ids[i:i + n]), set()).add(doc_idx)
        return index

    def _build_count_matrix(self):
        """Sparse (token x doc) counts, so the ROUGE-L upper bound is one vectorised step per candidate."""
        import numpy as np
        from scipy.sparse import csr_matrix

        rows, cols, vals = [], [], []
        for doc_idx, ids in enumerate(self._docs):
            for tok, count in Counter(ids).items():
                rows.append(tok)
                cols.append(doc_idx)
                vals.append(count)
        shape = (max(len(self._vocab), 1), max(len(self._docs), 1))
        self._doc_lengths = np.array([len(d) for d in self._docs] or [0])
        return csr_matrix((vals, (rows, cols)), shape=shape, dtype=np.int32)

    # --- checking -------------------------------------------------------
    def _candidate_ids(self, text: str) -> list[int]:
        """Like `_content_ids`, but unseen tokens get a throw-away id (they cannot match anything)."""
        tokens = self._content_tokens(text)
        return [self._vocab.get(tok, -1 - i) for i, tok in enumerate(tokens)]  # unique negative: matches nothing

    def _ngram_hit(self, ids: list[int]) -> tuple[int, int] | None:
        n = self.config.ngram_size
        hits: Counter[int] = Counter()
        for i in range(len(ids) - n + 1):
            for doc_idx in self._ngram_index.get(tuple(ids[i:i + n]), ()):
                hits[doc_idx] += 1
        return hits.most_common(1)[0] if hits else None

    def _rouge_hit(self, ids: list[int]) -> tuple[int, float] | None:
        import numpy as np

        known = [t for t in ids if t >= 0]
        if len(ids) < self.config.min_tokens or not known or not self._docs:
            return None
        cand_counts = Counter(known)
        toks = np.fromiter(cand_counts.keys(), dtype=np.int64)
        need = np.fromiter(cand_counts.values(), dtype=np.int32)
        sub = self._counts[toks].toarray()  # (candidate vocab x docs)
        shared = np.minimum(sub, need[:, None]).sum(axis=0)  # LCS upper bound per doc
        bound = 2.0 * shared / (len(ids) + self._doc_lengths)
        best: tuple[int, float] | None = None
        for doc_idx in np.nonzero(bound >= self.config.rouge_l_threshold)[0]:
            doc = self._docs[doc_idx]
            if len(doc) < self.config.min_tokens:
                continue
            score = rouge_l_f(ids, doc)
            if score >= self.config.rouge_l_threshold and (best is None or score > best[1]):
                best = (int(doc_idx), score)
        return best

    def check(self, question: str) -> tuple[str, str, float] | None:
        """(protected_id, reason, score) if `question` leaks a protected question, else None."""
        ids = self._candidate_ids(question)
        hit = self._ngram_hit(ids)
        if hit is not None:
            return self.ids[hit[0]], "ngram", float(hit[1])
        rouge = self._rouge_hit(ids)
        if rouge is not None:
            return self.ids[rouge[0]], "rouge_l", rouge[1]
        return None

    def filter(self, samples: Iterable[SyntheticSample]) -> tuple[list[SyntheticSample], list[LeakDrop]]:
        """Split synthetic samples into (kept, dropped with reason), comparing their user turns."""
        kept, dropped = [], []
        for sample in samples:
            verdict = self.check(sample.question)
            if verdict is None:
                kept.append(sample)
            else:
                dropped.append(LeakDrop(sample, *verdict))
        return kept, dropped

    def assert_no_leak(self, prompt_text: str) -> None:
        """`assert_no_leak` against this guard's protected ids and questions."""
        self._prompt_check(prompt_text)

    def redact(self, text: str) -> str:
        """`text` with protected ids and quoted protected questions replaced by a placeholder.

        Strategies are written from validation failures, and an LLM (or a person) may quote one;
        redacting keeps such text out of generation prompts without stopping the run.
        """
        try:
            self._prompt_check(text)
            return text
        except LeakError:
            pass
        for pid in self._prompt_check.ids:
            text = re.sub(rf"(?<![\w-]){re.escape(pid)}(?![\w-])", "[held-out example]", text)
        haystack = " " + " ".join(normalise_tokens(text)) + " "
        if any(needle.strip() and needle in haystack for needle in self._prompt_check.needles):
            return "[redacted: quoted a held-out question]"
        return text
