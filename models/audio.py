"""Audio encoder: a log-mel frontend inside the model, then a small CNN over the log-mel image.

The frontend uses only operators every ONNX runtime takes (onnxruntime, TensorRT, OpenVINO): the
STFT is the frames (cut by reshape and strided slices) times a fixed matrix of Hann-windowed DFT rows
(real and imaginary parts), then power, a fixed mel matrix applied as a matmul, and a log. It matches
``torchaudio.transforms.MelSpectrogram(center=True, pad_mode="constant", power=2.0)`` (tested).
SpecAugment (torchaudio's FrequencyMasking and TimeMasking) runs in training only.
"""

from __future__ import annotations

import math

import torch
import torchaudio
from torch import Tensor, nn

from stream.errors import ConfigError

LOG_FLOOR = 1e-6


class LogMel(nn.Module):
    """Raw waveform float32 [B, S] -> log-mel [B, n_mels, frames], frames = S // hop + 1 (an even n_fft).

    Framing is a reshape into ``gcd(n_fft, hop)``-sample chunks and strided slices of them (no gather, no
    unfold: every runtime takes these), the STFT one matrix product of the frames with the windowed DFT
    rows, and the mel matrix is applied on the frames-major power, so only the small log-mel is transposed.
    In onnxruntime this ran 1-3% faster than the same STFT as a strided ``Conv1d``, and its frames-major
    product is what the int8 file swaps for an integer one (:mod:`export.int8_dft`).
    """

    def __init__(self, *, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160, n_mels: int = 64,
                 f_min: float = 0.0, f_max: float | None = None) -> None:
        super().__init__()
        if not (n_fft >= 16 and 1 <= hop_length <= n_fft and 1 <= n_mels <= n_fft // 2 + 1):
            raise ConfigError(f"log-mel needs n_fft >= 16, 1 <= hop <= n_fft, 1 <= n_mels <= n_fft/2+1; "
                              f"got n_fft={n_fft}, hop={hop_length}, n_mels={n_mels}")
        self.n_fft, self.hop_length = n_fft, hop_length
        n_freq = n_fft // 2 + 1
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        k = torch.arange(n_freq, dtype=torch.float64).unsqueeze(1)
        n = torch.arange(n_fft, dtype=torch.float64).unsqueeze(0)
        angle = 2 * math.pi * k * n / n_fft
        kernels = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)])  # [2*n_freq, n_fft]
        self.register_buffer("dft", kernels.t().contiguous().float(), persistent=False)  # [n_fft, 2*n_freq]
        mel = torchaudio.functional.melscale_fbanks(n_freq, f_min, f_max or sample_rate / 2, n_mels, sample_rate)
        self.register_buffer("mel", mel.contiguous(), persistent=False)  # [n_freq, n_mels]

    def frames(self, audio: Tensor) -> Tensor:
        """Zero-padded (``center=True``) frames [B, S // hop + 1, n_fft]."""
        batch, samples = audio.shape[0], int(audio.shape[1])  # a model's audio length is fixed: a constant in ONNX
        pad, chunk = self.n_fft // 2, math.gcd(self.n_fft, self.hop_length)
        count = (samples + 2 * pad - self.n_fft) // self.hop_length + 1  # S // hop + 1 for an even n_fft
        extra = -(samples + 2 * pad) % chunk  # round up to whole chunks; never read
        # zeros concatenated, not nn.functional.pad: its exported pads are computed by a chain of ops that
        # onnxruntime's symbolic shape inference (run before int8 quantization) cannot follow
        padded = torch.cat([audio.new_zeros(batch, pad), audio, audio.new_zeros(batch, pad + extra)], dim=1)
        chunks = padded.reshape(batch, -1, chunk)
        step = self.hop_length // chunk
        return torch.cat([chunks[:, j : j + step * (count - 1) + 1 : step] for j in range(self.n_fft // chunk)], -1)

    def power(self, audio: Tensor) -> Tensor:
        """Power spectrogram, frames-major [B, frames, n_freq]."""
        spec = torch.matmul(self.frames(audio), self.dft)
        n_freq = self.dft.shape[1] // 2
        re, im = spec[..., :n_freq], spec[..., n_freq:]
        return re * re + im * im

    def forward(self, audio: Tensor) -> Tensor:
        """audio float32 [B, S] -> log-mel float32 [B, n_mels, S // hop + 1]."""
        if torch.is_autocast_enabled(audio.device.type):
            # float16 power overflows (> 65504) for a loud low-frequency or DC component: 0 * inf in the mel
            # matmul makes NaN. The frontend is a small part of the work, so it stays float32.
            with torch.autocast(audio.device.type, enabled=False):
                return self.forward(audio.float())
        return torch.log(torch.matmul(self.power(audio), self.mel) + LOG_FLOOR).transpose(1, 2)


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.MaxPool2d(2)]


class AudioEncoder(nn.Module):
    """Waveform float32 [B, S] -> embedding [B, dim]."""

    def __init__(self, *, sample_rate: int = 16000, n_fft: int = 400, hop_length: int = 160, n_mels: int = 64,
                 dim: int = 128, width: int = 16, freq_mask: int = 8, time_mask: int = 20) -> None:
        super().__init__()
        self.frontend = LogMel(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
        self.norm = nn.BatchNorm2d(1)  # learns the scale of log-mel values
        self.spec_augment = nn.Sequential(torchaudio.transforms.FrequencyMasking(freq_mask, iid_masks=True),
                                          torchaudio.transforms.TimeMasking(time_mask, iid_masks=True))
        self.cnn = nn.Sequential(*_block(1, width), *_block(width, 2 * width), *_block(2 * width, 4 * width))
        bands = n_mels // 8  # frequency rows left after three 2x2 max-pools
        if bands < 1:
            raise ConfigError(f"the audio CNN needs n_mels >= 8, got {n_mels}")
        # Pool over time only: where a sound sits in frequency (a low or a high tone) is what matters.
        self.proj = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * bands, dim), nn.LayerNorm(dim))

    def forward(self, audio: Tensor) -> Tensor:
        """audio float32 [B, S] -> embedding [B, dim]."""
        x = self.norm(self.frontend(audio).unsqueeze(1))  # [B, 1, n_mels, frames]
        if self.training:
            x = self.spec_augment(x)
        x = self.cnn(x)  # [B, 4*width, n_mels/8, frames/8]
        return self.proj(x.mean(dim=3))
