"""Text encoder: token embedding, a bidirectional GRU over the padded batch, masked mean pooling.

No ``pack_padded_sequence`` (it does not export to ONNX cleanly): the GRU runs over the whole
padded batch and the pooling ignores padding positions. An all-padding row (empty caption, a
missing modality) pools to zeros, never NaN. The backward direction still reads the (zero) padding
after the last word before it reaches the words, so an embedding depends on the padded length: the
tokenizer's fixed ``max_len``, the same in training and in the exported model.
"""

from __future__ import annotations

from torch import Tensor, nn

from avfuse.stream.errors import ConfigError


class TextEncoder(nn.Module):
    """int64 tokens [B, L] (0 = padding) -> embedding [B, dim]."""

    def __init__(self, *, vocab_size: int, dim: int = 128, embed: int = 64) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ConfigError(f"text vocab_size must be >= 2 (<pad>, <unk>), got {vocab_size}")
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.gru = nn.GRU(embed, dim // 2, batch_first=True, bidirectional=True)
        self.proj = nn.Sequential(nn.Linear(2 * (dim // 2), dim), nn.LayerNorm(dim))

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens int64 [B, L] -> embedding [B, dim]; an all-padding row gives proj(0), finite."""
        mask = tokens.ne(0).unsqueeze(-1).float()  # [B, L, 1]
        # Indexing rather than calling the module: the torch.export-based ONNX exporter names the value of an
        # aten.embedding call "embedding", which would clash with the model's output of that name.
        # Multiplying by the mask keeps padding a zero vector, as padding_idx would.
        out, _ = self.gru(self.embed.weight[tokens] * mask)  # [B, L, 2*(dim//2)]
        pooled = (out * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.proj(pooled)
