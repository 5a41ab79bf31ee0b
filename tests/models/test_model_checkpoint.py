"""Checkpoint round trip and the errors a user gets for bad checkpoint files."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from avfuse.models.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint  # noqa: E402
from avfuse.models.net import ModelConfig, build_model  # noqa: E402
from avfuse.stream.errors import ModelError  # noqa: E402
from avfuse.stream.infer.tokenize import Tokenizer  # noqa: E402
from avfuse.stream.media.config import DecodeConfig, SegmentConfig, decode_metadata  # noqa: E402

TOKENIZER = Tokenizer.build(["a dog barks", "rain falls on the roof", "a car passes"], max_len=6)
DECODE = decode_metadata(DecodeConfig(fps=2, height=32, width=32), SegmentConfig(window_s=1.0))


def config(**kw) -> ModelConfig:
    base = dict(labels=("dog", "rain", "car"), frames=2, height=32, width=32, sample_rate=16000, samples=16000,
                vocab_size=len(TOKENIZER), max_tokens=6, dim=32, n_mels=32)
    return ModelConfig(**{**base, **kw})


def save(tmp_path, cfg=None, **kw):
    cfg = cfg or config()
    model = build_model(cfg)
    path = save_checkpoint(tmp_path / "run", model, config=cfg, decode=DECODE, tokenizer=TOKENIZER,
                           metrics=kw.get("metrics", {"val": {"accuracy": 0.5}}), train_args={"epochs": 3})
    return model, path


def test_round_trip_gives_the_same_outputs(tmp_path):
    model, path = save(tmp_path, config(fusion="sequential", modalities=("audio", "text")))
    assert path.name == "model.pt" and (path.parent / "config.json").is_file()
    loaded, ckpt = load_checkpoint(tmp_path / "run")
    assert not loaded.training
    assert ckpt.config == model.config and ckpt.decode == DECODE and ckpt.tokenizer == TOKENIZER
    assert ckpt.metrics == {"val": {"accuracy": 0.5}} and ckpt.train_args == {"epochs": 3}
    assert ckpt.format_version == FORMAT_VERSION
    frames = torch.randint(0, 256, (2, 2, 32, 32, 3), dtype=torch.uint8)
    audio, present = torch.randn(2, 16000), torch.ones(2, 3)
    tokens = torch.from_numpy(TOKENIZER.encode_batch(["a dog", "rain"]))
    model.eval()
    with torch.no_grad():
        for a, b in zip(model(frames, audio, tokens, present), loaded(frames, audio, tokens, present), strict=True):
            assert torch.equal(a, b)
    side = json.loads((path.parent / "config.json").read_text())
    assert side["config"]["fusion"] == "sequential" and side["decode"] == DECODE


def test_missing_checkpoint(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_checkpoint(tmp_path):
    _, path = save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"model\.pt.*truncated") as e:
        load_checkpoint(path)
    assert e.value.__cause__ is not None


def test_foreign_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ModelError, match=r"notes.pt"):
        load_checkpoint(text)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelError, match="format marker"):
        load_checkpoint(foreign)


def test_other_format_version(tmp_path):
    _, path = save(tmp_path)
    blob = torch.load(path, weights_only=True)
    blob["format_version"] = FORMAT_VERSION + 1
    torch.save(blob, path)
    with pytest.raises(ModelError, match="format version"):
        load_checkpoint(path)


def test_state_dict_not_matching_config_names_the_keys(tmp_path):
    _, path = save(tmp_path, config(dim=32))
    blob = torch.load(path, weights_only=True)
    blob["config"]["modalities"] = ["video", "text"]  # audio weights now unexpected
    torch.save(blob, path)
    with pytest.raises(ModelError, match=r"unexpected keys \['audio\."):
        load_checkpoint(path)
    blob["config"]["modalities"] = ["video", "audio", "text"]
    blob["config"]["dim"] = 48
    torch.save(blob, path)
    with pytest.raises(ModelError, match="shape mismatch"):
        load_checkpoint(path)


def test_a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_temporary(tmp_path, monkeypatch):
    _model, path = save(tmp_path)
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save(tmp_path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json", "model.pt"]
    load_checkpoint(path)


def test_fields_of_the_wrong_form_are_a_model_error(tmp_path):
    _, path = save(tmp_path)
    blob = torch.load(path, weights_only=True)
    torch.save({**blob, "decode": "fps=2"}, path)
    with pytest.raises(ModelError, match=r"\['decode'\]"):
        load_checkpoint(path)
    torch.save({**blob, "state_dict": {"fusion.head.0.weight": [1.0]}}, path)
    with pytest.raises(ModelError, match="state dict of tensors"):
        load_checkpoint(path)


def test_saving_a_model_with_another_config_or_tokenizer_is_refused(tmp_path):
    model = build_model(config())
    with pytest.raises(ModelError, match="another config"):
        save_checkpoint(tmp_path / "run", model, config=config(dim=48), decode=DECODE, tokenizer=TOKENIZER,
                        metrics={}, train_args={})
    small = Tokenizer.build(["a dog"], max_len=6)
    with pytest.raises(ModelError, match="vocab_size"):
        save_checkpoint(tmp_path / "run", model, config=config(), decode=DECODE, tokenizer=small, metrics={},
                        train_args={})
    assert not (tmp_path / "run").exists()
