"""The torch view of a SegmentSet (models/data.py keeps numpy only)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from models.data import SegmentSet
from stream.tokenize import Tokenizer


class TorchSegments(Dataset):
    """Items ``(frames uint8 [T, H, W, 3], audio float32 [S], tokens int64 [L], present float32 [3],
    label int64 [])``: raw inputs, as the exported model takes them. Tensors share the set's memory."""

    def __init__(self, ds: SegmentSet, tokenizer: Tokenizer):
        self.ds = ds
        self.tokenizer = tokenizer
        self.frames = torch.from_numpy(ds.frames)
        self.audio = torch.from_numpy(ds.audio)
        self.tokens = torch.from_numpy(tokenizer.encode_batch(ds.texts))
        self.present = torch.from_numpy(ds.present)
        self.labels = torch.from_numpy(ds.labels)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.frames[i], self.audio[i], self.tokens[i], self.present[i], self.labels[i]
