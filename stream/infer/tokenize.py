"""A small word tokenizer, pure Python, saved as JSON in the model's metadata.

Id 0 is padding, id 1 is an unknown word. The vocabulary is built from training captions.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from avfuse.stream.errors import ModelError

PAD, UNK = 0, 1
MAX_LEN = 4096  # tokens per segment at the most: far beyond a caption, small enough to allocate per batch
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


@dataclass(frozen=True, kw_only=True)
class Tokenizer:
    vocab: tuple[str, ...]  # index = id; vocab[0] = "<pad>", vocab[1] = "<unk>"
    max_len: int = 16
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.vocab) < 2 or self.vocab[0] != "<pad>" or self.vocab[1] != "<unk>":
            raise ModelError("tokenizer vocab must start with '<pad>', '<unk>'")
        if not all(isinstance(w, str) for w in self.vocab):
            raise ModelError("tokenizer vocab must be strings")
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or not 1 <= self.max_len <= MAX_LEN:
            raise ModelError(f"tokenizer max_len must be an integer 1..{MAX_LEN}, got {self.max_len!r}")
        object.__setattr__(self, "_ids", {w: i for i, w in enumerate(self.vocab)})

    @classmethod
    def build(cls, texts: Iterable[str], *, max_len: int = 16, min_count: int = 1,
              max_size: int = 20000) -> Tokenizer:
        counts = Counter(w for t in texts for w in words(t))
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(vocab=("<pad>", "<unk>", *kept[: max_size - 2]), max_len=max_len)

    def encode(self, text: str) -> np.ndarray:
        """int64 [max_len]; all zeros for empty text (a missing modality, not padding words)."""
        ids = [self._ids.get(w, UNK) for w in words(text)][: self.max_len]
        out = np.zeros(self.max_len, dtype=np.int64)
        out[: len(ids)] = ids
        return out

    def encode_batch(self, texts: Iterable[str]) -> np.ndarray:
        """int64 [B, max_len]."""
        rows = [self.encode(t) for t in texts]
        return np.stack(rows) if rows else np.zeros((0, self.max_len), np.int64)

    def to_json(self) -> str:
        return json.dumps({"type": "words", "max_len": self.max_len, "vocab": list(self.vocab)})

    @classmethod
    def from_json(cls, text: str) -> Tokenizer:
        try:
            d = json.loads(text)
            if d.get("type") != "words":
                raise ModelError(f"unknown tokenizer type {d.get('type')!r}; this runtime knows 'words'")
            if not isinstance(d["vocab"], list):
                raise ModelError(f"tokenizer vocab must be a JSON list of strings, got {type(d['vocab']).__name__}")
            return cls(vocab=tuple(d["vocab"]), max_len=d["max_len"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"tokenizer metadata is not valid JSON of the expected form: {e}") from e

    def __len__(self) -> int:
        return len(self.vocab)
