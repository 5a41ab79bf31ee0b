"""The model's forward contract: shapes, dtypes, gates, absent modalities, config validation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from avfuse.models.net import ModelConfig, build_model  # noqa: E402
from avfuse.stream.errors import ConfigError  # noqa: E402

B, T, H, W, S, L = 3, 2, 32, 32, 8000, 6


def config(**kw) -> ModelConfig:
    base = dict(labels=("a", "b", "c", "d"), frames=T, height=H, width=W, sample_rate=16000, samples=S,
                vocab_size=20, max_tokens=L, dim=32, n_mels=32)
    return ModelConfig(**{**base, **kw})


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (B, T, H, W, 3), dtype=torch.uint8, generator=g)
    audio = torch.randn(B, S, generator=g) * 0.1
    tokens = torch.randint(1, 20, (B, L), generator=g)
    tokens[:, 4:] = 0
    present = torch.ones(B, 3)
    return frames, audio, tokens, present


@pytest.mark.parametrize("fusion", ["gated", "concat", "sequential"])
def test_forward_shapes_dtypes_and_gates(fusion):
    model = build_model(config(fusion=fusion)).eval()
    frames, audio, tokens, present = inputs()
    present[0, 1] = 0  # no audio track
    tokens[1] = 0  # no captions: a missing modality even though present says 1
    present[2] = torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        probs, gates, emb = model(frames, audio, tokens, present)
    assert probs.shape == (B, 4) and gates.shape == (B, 3) and emb.shape == (B, 32)
    assert probs.dtype == gates.dtype == emb.dtype == torch.float32
    assert torch.allclose(probs.sum(1), torch.ones(B), atol=1e-5)
    assert torch.allclose(gates.sum(1), torch.ones(B), atol=1e-5)
    assert gates[0, 1] == 0 and gates[1, 2] == 0 and gates[2, 0] == 0 and gates[2, 1] == 0
    assert gates[2, 2] == pytest.approx(1.0)
    assert torch.isfinite(emb).all()


def test_absent_modality_input_is_ignored():
    model = build_model(config()).eval()
    frames, audio, tokens, present = inputs()
    present[:, 1] = 0
    with torch.no_grad():
        a = model(frames, audio, tokens, present)[0]
        b = model(frames, torch.randn(B, S), tokens, present)[0]
    assert torch.allclose(a, b)


def test_modality_not_configured_has_no_encoder_and_zero_gate():
    model = build_model(config(modalities=("video", "text"))).eval()
    assert model.audio is None and not any(k.startswith("audio.") for k in model.state_dict())
    with torch.no_grad():
        _, gates, _ = model(*inputs())
    assert (gates[:, 1] == 0).all() and torch.allclose(gates.sum(1), torch.ones(B))


def test_all_padding_text_gives_no_nan_in_training_mode():
    model = build_model(config(modalities=("text",), modality_dropout=0.5)).train()
    frames, audio, tokens, present = inputs()
    tokens[0] = 0
    logits = model.logits(frames, audio, tokens, present)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_modality_dropout_never_hides_everything():
    model = build_model(config(modality_dropout=0.9)).train()
    _, _, tokens, _ = inputs()
    present = torch.ones(B, 3).repeat(200, 1)
    p = model.effective_present(tokens.repeat(200, 1), present)
    assert (p.sum(1) > 0).all()
    assert (p.sum(1) < 3).float().mean() > 0.5  # it really drops
    assert torch.equal(model.eval().effective_present(tokens, torch.ones(B, 3)), torch.ones(B, 3))


def test_uint8_frames_are_normalised_inside_the_model():
    model = build_model(config(modalities=("video",))).eval()
    seen = []
    model.video.backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    mean = torch.tensor([0.485, 0.456, 0.406])
    std = torch.tensor([0.229, 0.224, 0.225])
    frames = torch.zeros(2, T, H, W, 3, dtype=torch.uint8)
    frames[0] = (mean * 255).round().to(torch.uint8)  # ImageNet's mean colour: ~0 after normalisation
    with torch.no_grad():
        model.video(frames)
    x = seen[0].view(2, T, 3, H, W)
    assert x.dtype == torch.float32
    assert x[0].abs().max() < 0.01
    assert torch.allclose(x[1].amax(dim=(0, 2, 3)), -mean / std, atol=1e-5)


def test_attention_pooling_is_a_weighted_mean_over_frames():
    model = build_model(config(pooling="attention", modalities=("video",))).eval()
    frames, *_ = inputs()
    with torch.no_grad():
        pooled = model.video(frames)
        per_frame = torch.stack([model.video(frames[:, t: t + 1]) for t in range(T)], dim=1)  # [B, T, dim]
        reversed_order = model.video(frames.flip(1))
    assert pooled.shape == (B, 32) and torch.isfinite(pooled).all()
    assert (pooled >= per_frame.amin(1) - 1e-5).all() and (pooled <= per_frame.amax(1) + 1e-5).all()
    assert torch.allclose(pooled, reversed_order, atol=1e-5)  # the frame order does not matter, only content
    assert not torch.allclose(pooled, per_frame.mean(1), atol=1e-4)  # not plain mean pooling


@pytest.mark.parametrize("bad", [dict(labels=("only",)), dict(fusion="sum"), dict(modalities=("smell",)),
                                 dict(modalities=()), dict(image_backbone="vgg"), dict(pooling="max"),
                                 dict(frames=0), dict(modality_dropout=1.0), dict(dim=1), dict(hop_length=0),
                                 dict(samples=1000), dict(n_mels=4)])
def test_bad_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        config(**bad)


def test_short_audio_is_refused_unless_audio_is_off():
    with pytest.raises(ConfigError, match="8 log-mel frames"):
        config(samples=1000)
    model = build_model(config(samples=1000, modalities=("video", "text"))).eval()
    frames, _, tokens, present = inputs()
    with torch.no_grad():
        probs, _, _ = model(frames, torch.zeros(B, 1000), tokens, present)
    assert probs.shape == (B, 4)


def test_config_dict_round_trip():
    c = config(fusion="concat", modalities=("audio", "text"))
    d = c.to_dict()
    assert d["labels"] == ["a", "b", "c", "d"]
    assert ModelConfig.from_dict(d) == c
    with pytest.raises(ConfigError, match="unknown fields"):
        ModelConfig.from_dict({**d, "colour": "red"})


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small", "resnet18", "efficientnet_b0"])
def test_torchvision_backbones_with_random_init(backbone):
    model = build_model(config(image_backbone=backbone, modalities=("video",))).eval()
    frames, audio, tokens, present = inputs()
    with torch.no_grad():
        probs, gates, emb = model(frames, audio, tokens, present)
    assert probs.shape == (B, 4) and emb.shape == (B, 32) and torch.isfinite(probs).all()
    assert torch.equal(gates, torch.tensor([[1.0, 0.0, 0.0]] * B))


def test_a_config_from_before_the_texture_energies_rebuilds_a_network_without_them():
    saved = config().to_dict()
    assert saved.pop("texture") == "invariant"  # the default recipe's
    old = ModelConfig.from_dict(saved)
    assert old.texture == "none" and build_model(old).video.texture is None
    assert build_model(config()).video.texture is not None
    assert "gabor-texture-invariant" in build_model(config()).describe()["encoders"]["video"]


def test_a_config_from_when_the_texture_energies_were_on_or_off_rebuilds_the_same_network():
    saved = config().to_dict()
    on = build_model(ModelConfig.from_dict({**saved, "texture": True}))  # one energy per orientation then
    assert on.config.texture == "oriented" and on.video.texture[0].invariant is False
    assert on.video.proj[0].in_features == build_model(config()).video.proj[0].in_features - 12
    assert ModelConfig.from_dict({**saved, "texture": False}).texture == "none"
    with pytest.raises(ConfigError, match="texture must be one of"):
        ModelConfig.from_dict({**saved, "texture": "sorted"})
