"""The torch view of a SegmentSet (models/data.py keeps numpy only): model inputs as tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from avfuse.models.data import SegmentSet
from avfuse.stream.infer.tokenize import Tokenizer


@dataclass(frozen=True, kw_only=True)
class Tensors:
    """A segment set as model inputs: frames uint8 [N, T, H, W, 3], audio float32 [N, S], tokens int64 [N, L],
    present float32 [N, 3], labels int64 [N]."""

    frames: torch.Tensor
    audio: torch.Tensor
    tokens: torch.Tensor
    present: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx) -> tuple[torch.Tensor, ...]:
        """``(frames, audio, tokens, present, labels)`` at ``idx`` (an int, a slice or an index tensor)."""
        return self.frames[idx], self.audio[idx], self.tokens[idx], self.present[idx], self.labels[idx]


def to_tensors(ds: SegmentSet, tokenizer: Tokenizer) -> Tensors:
    """A SegmentSet -> Tensors; the arrays are shared, not copied, where dtypes and layout already fit."""
    return Tensors(
        frames=torch.from_numpy(np.ascontiguousarray(ds.frames, dtype=np.uint8)),
        audio=torch.from_numpy(np.ascontiguousarray(ds.audio, dtype=np.float32)),
        tokens=torch.from_numpy(tokenizer.encode_batch(ds.texts)),
        present=torch.from_numpy(np.ascontiguousarray(ds.present, dtype=np.float32)),
        labels=torch.from_numpy(np.asarray(ds.labels, dtype=np.int64)),
    )


class TorchSegments(Dataset):
    """Items ``(frames uint8 [T, H, W, 3], audio float32 [S], tokens int64 [L], present float32 [3],
    label int64 [])``: raw inputs, as the exported model takes them. Tensors share the set's memory."""

    def __init__(self, ds: SegmentSet, tokenizer: Tokenizer) -> None:
        self.tensors = to_tensors(ds, tokenizer)

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.tensors.batch(i)
