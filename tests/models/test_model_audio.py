"""The in-graph log-mel frontend against torchaudio, and the audio encoder's train/eval behaviour."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchaudio = pytest.importorskip("torchaudio")

from avfuse.models.audio import LOG_FLOOR, AudioEncoder, LogMel  # noqa: E402


@pytest.mark.parametrize("n_fft,hop,n_mels,samples", [
    (400, 160, 64, 16000), (512, 256, 40, 16000), (400, 320, 40, 16000), (400, 128, 32, 12345), (300, 300, 32, 9000),
    (401, 160, 32, 16000), (401, 160, 32, 16001)])
def test_log_mel_matches_torchaudio(n_fft, hop, n_mels, samples):
    t = torch.arange(samples) / 16000
    g = torch.Generator().manual_seed(0)
    audio = torch.stack([0.5 * torch.sin(2 * np.pi * 440 * t), 0.1 * torch.randn(samples, generator=g)])
    ours = LogMel(sample_rate=16000, n_fft=n_fft, hop_length=hop, n_mels=n_mels)(audio)
    ref = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=n_fft, hop_length=hop, n_mels=n_mels,
                                               center=True, pad_mode="constant", power=2.0)(audio)
    ref = torch.log(ref + LOG_FLOOR)
    assert ours.shape == ref.shape == (2, n_mels, (samples + 2 * (n_fft // 2) - n_fft) // hop + 1)
    # compare where there is energy (log of near-zero bins amplifies float32 rounding)
    loud = ref > -6
    assert loud.float().mean() > 0.5
    assert torch.allclose(ours[loud], ref[loud], atol=2e-3, rtol=1e-4)


def test_log_mel_peak_is_at_the_tone():
    t = torch.arange(16000) / 16000
    low = LogMel()(torch.sin(2 * np.pi * 300 * t)[None])
    high = LogMel()(torch.sin(2 * np.pi * 2400 * t)[None])
    assert low.mean(-1).argmax() < high.mean(-1).argmax()


def test_spec_augment_only_in_training():
    enc = AudioEncoder(dim=16, n_mels=32)
    audio = torch.randn(4, 8000)
    enc.eval()
    with torch.no_grad():
        assert torch.equal(enc(audio), enc(audio))
    enc.train()  # batch norm uses batch statistics, deterministic: only SpecAugment differs between calls
    torch.manual_seed(0)
    assert not torch.equal(enc(audio), enc(audio))


def test_log_mel_stays_finite_under_float16_autocast():
    loud = torch.stack([torch.full((16000,), 1.5), 1.5 * torch.sin(2 * np.pi * 440 * torch.arange(16000) / 16000)])
    frontend = LogMel()
    with torch.autocast("cpu", dtype=torch.float16):  # as on a CUDA GPU without bfloat16
        out = frontend(loud)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out, frontend(loud))
