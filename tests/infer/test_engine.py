"""The engine: provider selection and fallback (pure), and a real onnxruntime session on the CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from onnx_models import COLOURS, LABELS, colour_model, expected_probs

from avfuse.stream.errors import ConfigError, MediaError, ModelError
from avfuse.stream.infer.engine import CPU, CUDA, TRT, Engine, EngineConfig, select_providers, trt_profile
from avfuse.stream.media.segment import Present, Segment

ALL = [TRT, CUDA, CPU]


@pytest.mark.parametrize(("requested", "available", "want"), [
    ("auto", ALL, [TRT, CUDA, CPU]),
    ("auto", [CUDA, CPU], [CUDA, CPU]),
    ("auto", ["AzureExecutionProvider", CPU], [CPU]),
    ("auto", [], [CPU]),
    ("cpu", ALL, [CPU]),
    ("cuda", ALL, [CUDA, CPU]),
    ("tensorrt", ALL, [TRT, CUDA, CPU]),
])
def test_selection_without_fallback(requested, available, want):
    assert select_providers(requested, available) == (want, [])


def test_absent_tensorrt_falls_back_to_cuda_with_a_warning():
    providers, warnings = select_providers("tensorrt", [CUDA, CPU])
    assert providers == [CUDA, CPU]
    assert len(warnings) == 1 and "TensorrtExecutionProvider" in warnings[0] and "cuda" in warnings[0]


def test_absent_cuda_falls_back_to_cpu_with_a_warning():
    providers, warnings = select_providers("cuda", [CPU])
    assert providers == [CPU]
    assert "falling back to cpu" in warnings[0]


@pytest.mark.parametrize("requested", ["cuda", "tensorrt"])
def test_strict_device_refuses_to_fall_back(requested):
    with pytest.raises(ConfigError, match="strict-device"):
        select_providers(requested, [CPU], strict=True)


def test_unknown_device_is_a_config_error():
    with pytest.raises(ConfigError, match="'gpu'"):
        select_providers("gpu", ALL)
    with pytest.raises(ConfigError):
        EngineConfig(device="gpu")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return colour_model(tmp_path_factory.mktemp("m") / "colour.onnx")


def _segment(spec, rgb, index=0, text=""):
    frames = np.empty((spec.frames, spec.decode.height, spec.decode.width, 3), np.uint8)
    frames[...] = rgb
    return Segment(source="x", index=index, start=float(index), end=index + 1.0, frames=frames,
                   audio=np.zeros(spec.samples, np.float32), text=text,
                   present=Present(video=True, audio=False, text=bool(text)))


def test_real_cpu_session_labels_solid_colours(model, tmp_path):
    engine = Engine(model, EngineConfig(device="cpu", threads=1, cache_dir=tmp_path / "cache"))
    assert engine.providers == [CPU] and engine.device == "cpu"
    segs = [_segment(engine.spec, COLOURS[name], i) for i, name in enumerate(LABELS)]
    out = engine.run_segments(segs)
    assert out.probs.shape == (3, 3) and out.gates.shape == (3, 3) and out.embedding.shape == (3, 5)
    assert [LABELS[i] for i in out.probs.argmax(1)] == list(LABELS)
    np.testing.assert_allclose(out.probs[0], expected_probs(COLOURS["red"]), rtol=1e-4)
    np.testing.assert_allclose(out.gates[0], [1, 0, 0], atol=1e-4)


def test_optimised_model_is_cached_and_reused(model, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = Engine(model, EngineConfig(device="cpu", threads=1, cache_dir=cache))
    saved = list(cache.glob("colour.*.onnx"))
    assert len(saved) == 1
    with caplog.at_level(logging.DEBUG, logger="avfuse.stream.infer.engine"):
        second = Engine(model, EngineConfig(device="cpu", threads=1, cache_dir=cache))
    assert f"loading the cached optimised model {saved[0]}" in caplog.text
    seg = [_segment(first.spec, COLOURS["green"])]
    np.testing.assert_allclose(first.run_segments(seg).probs, second.run_segments(seg).probs, rtol=1e-6)


def test_a_corrupt_cached_model_is_rebuilt_not_fatal(model, tmp_path, caplog):
    cache = tmp_path / "cache"
    Engine(model, EngineConfig(device="cpu", threads=1, cache_dir=cache))
    (saved,) = cache.glob("colour.*.onnx")
    saved.write_bytes(saved.read_bytes()[:100])  # as a run killed while writing it would leave it
    with caplog.at_level(logging.WARNING, logger="avfuse.stream.infer.engine"):
        engine = Engine(model, EngineConfig(device="cpu", threads=1, cache_dir=cache))
    assert "cannot be loaded" in caplog.text and saved.stat().st_size > 100  # rebuilt in place
    out = engine.run_segments([_segment(engine.spec, COLOURS["blue"])])
    assert LABELS[int(out.probs[0].argmax())] == "blue"


def test_asking_for_cuda_on_this_machine_falls_back_and_logs_it(model, caplog):
    with caplog.at_level(logging.INFO, logger="avfuse.stream.infer.engine"):
        engine = Engine(model, EngineConfig(device="cuda", threads=1), available=[CPU])
    assert engine.providers == [CPU]
    assert any("falling back to cpu" in r.message for r in caplog.records)
    assert any("on CPUExecutionProvider" in r.message for r in caplog.records)
    with pytest.raises(ConfigError):
        Engine(model, EngineConfig(device="cuda", strict_device=True), available=[CPU])


def test_segment_of_the_wrong_size_is_a_media_error(model):
    engine = Engine(model, EngineConfig(device="cpu", threads=1))
    seg = _segment(engine.spec, COLOURS["red"])
    bad = Segment(source="clip.mp4", index=3, start=0.0, end=1.0, frames=seg.frames[:, :8], audio=seg.audio,
                  text="", present=seg.present)
    with pytest.raises(MediaError, match=r"clip.mp4 segment 3"):
        engine.run_segments([bad])


def test_onnxruntime_failing_on_a_batch_is_a_model_error(model):
    engine = Engine(model, EngineConfig(device="cpu", threads=1))
    spec = engine.spec
    frames = np.zeros((1, spec.frames, spec.decode.height, spec.decode.width, 3), np.float32)  # not uint8
    with pytest.raises(ModelError, match=r"colour\.onnx: onnxruntime failed on a batch of 1 on cpu") as info:
        engine.run(frames, np.zeros((1, spec.samples), np.float32), np.zeros((1, 8), np.int64),
                   np.zeros((1, 3), np.float32))
    assert info.value.__cause__ is not None


def test_tensorrt_shape_profile_covers_batch_one_to_max(model):
    spec = Engine(model, EngineConfig(device="cpu", threads=1)).spec
    assert trt_profile(spec, 8) == "frames:8x2x32x32x3,audio:8x8000,tokens:8x8,present:8x3"
