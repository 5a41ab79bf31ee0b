"""The onnxruntime engine: a session built from the model file alone, on the best device offered.

``select_providers`` is the pure decision (requested device x available providers -> provider list
and warnings); ``Engine`` builds the session with the options each provider needs, warms it up and
runs batches of segments.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from avfuse.stream.errors import ConfigError, MediaError, ModelError
from avfuse.stream.infer.modelspec import ModelSpec, read_spec
from avfuse.stream.media.segment import Segment

log = logging.getLogger(__name__)

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
# What each device asks for, best first; every list ends on the CPU so unsupported nodes still run.
_CHAINS = {"tensorrt": (TRT, CUDA, CPU), "cuda": (CUDA, CPU), "cpu": (CPU,)}
_NAMES = {TRT: "tensorrt", CUDA: "cuda", CPU: "cpu"}
GRAPH_OPT = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "avfuse"


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """How the model is run. ``threads`` 0 lets onnxruntime choose (one per core)."""

    device: str = "auto"
    strict_device: bool = False  # fail instead of falling back when the requested device is absent
    threads: int = 0  # intra-op threads
    inter_threads: int = 1
    graph_opt: str = "all"
    cache_dir: Path | None = None  # optimised model + TensorRT engines; None disables the cache
    fp16: bool = False  # TensorRT fp16 kernels
    device_id: int = 0
    warmup: bool = True
    max_batch: int = 8  # largest batch the pipeline sends (TensorRT shape profile, warm-up)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.graph_opt not in GRAPH_OPT:
            raise ConfigError(f"graph_opt must be one of {tuple(GRAPH_OPT)}, got {self.graph_opt!r}")
        if self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.threads < 0 or self.inter_threads < 0 or self.device_id < 0:
            raise ConfigError(f"threads, inter_threads and device_id must be >= 0, got "
                              f"{self.threads}, {self.inter_threads}, {self.device_id}")


def select_providers(requested: str, available: Sequence[str], *,
                     strict: bool = False) -> tuple[list[str], list[str]]:
    """Map a requested device and the providers onnxruntime offers to (providers, warnings).

    ``auto`` takes TensorRT, then CUDA, then CPU, whichever are offered, silently. An explicit device
    that is absent falls back down its chain with a warning, or raises ConfigError when ``strict``.
    """
    if requested not in DEVICES:
        raise ConfigError(f"device must be one of {DEVICES}, got {requested!r}")
    offered = set(available)
    chain = _CHAINS["tensorrt" if requested == "auto" else requested]
    providers = [p for p in chain if p in offered or p == CPU]
    warnings: list[str] = []
    if requested != "auto" and chain[0] not in offered:
        msg = (f"device {requested!r} needs {chain[0]}, which this onnxruntime does not offer "
               f"(available: {', '.join(available) or 'none'})")
        if strict:
            raise ConfigError(msg + "; install onnxruntime-gpu with CUDA/TensorRT, or drop --strict-device")
        warnings.append(f"{msg}; falling back to {_NAMES[providers[0]]}")
    return providers, warnings


def _model_key(path: Path) -> str:
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{ort.__version__}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def trt_profile(spec: ModelSpec, batch: int) -> str:
    """A TensorRT shape-profile string (``name:dims,...``) for ``batch`` segments of this model."""
    shapes = {"frames": (batch, spec.frames, spec.decode.height, spec.decode.width, 3),
              "audio": (batch, spec.samples), "tokens": (batch, spec.tokenizer.max_len), "present": (batch, 3)}
    return ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in shapes.items())


def _provider_options(provider: str, config: EngineConfig, cache: Path | None, spec: ModelSpec) -> dict:
    if provider == TRT:
        # One engine for every batch size 1..max_batch, built once (and cached) instead of once per size.
        opts = {"device_id": config.device_id, "trt_fp16_enable": config.fp16,
                "trt_profile_min_shapes": trt_profile(spec, 1),
                "trt_profile_opt_shapes": trt_profile(spec, config.max_batch),
                "trt_profile_max_shapes": trt_profile(spec, config.max_batch)}
        if cache is not None:
            opts |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache / "trt"),
                     "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache / "trt")}
        return opts
    if provider == CUDA:
        return {"device_id": config.device_id, "cudnn_conv_algo_search": "HEURISTIC",
                "arena_extend_strategy": "kSameAsRequested"}
    return {}


@dataclass(frozen=True, kw_only=True)
class Outputs:
    probs: np.ndarray  # float32 [B, C]
    gates: np.ndarray  # float32 [B, 3]
    embedding: np.ndarray  # float32 [B, D]


class Engine:
    """One onnxruntime session for an avfuse model. Thread-safe to ``run`` from one thread at a time."""

    def __init__(self, model: str | Path, config: EngineConfig | None = None, *,
                 available: Sequence[str] | None = None) -> None:
        self.config = config or EngineConfig()
        self.path = Path(model)
        self.spec: ModelSpec = read_spec(self.path)
        offered = list(ort.get_available_providers() if available is None else available)
        wanted, warnings = select_providers(self.config.device, offered, strict=self.config.strict_device)
        for w in warnings:
            log.warning(w)
        self.session = self._build(wanted)
        self.providers: list[str] = list(self.session.get_providers())
        log.info("model %s on %s (asked for %s)", self.path.name, ", ".join(self.providers), ", ".join(wanted))
        if self.config.device != "auto" and self.providers[0] != wanted[0]:
            msg = f"onnxruntime could not start {wanted[0]}; running on {self.providers[0]}"
            if self.config.strict_device:
                raise ConfigError(msg)
            log.warning(msg)
        self._dtypes = {i.name: i.type for i in self.session.get_inputs()}
        if self.config.warmup:
            self.warmup()
            if self.config.max_batch > 1 and self.providers[0] != CPU:
                self.warmup(self.config.max_batch)

    def _build(self, providers: list[str]) -> ort.InferenceSession:
        cfg = self.config
        cache = cfg.cache_dir
        if cache is not None:
            try:
                cache.mkdir(parents=True, exist_ok=True)
                (cache / "trt").mkdir(exist_ok=True)
            except OSError as e:
                log.warning("cache folder %s is not writable (%s); running without a cache", cache, e)
                cache = None
        options = [_provider_options(p, cfg, cache, self.spec) for p in providers]
        opt = None
        if cache is not None and providers == [CPU] and cfg.graph_opt != "disable":
            # The optimised graph is saved once; later runs load it and skip the optimisation passes.
            opt = cache / f"{self.path.stem}.{_model_key(self.path)}.{cfg.graph_opt}.onnx"
            if opt.is_file():
                log.debug("loading the cached optimised model %s", opt)
                try:
                    return self._session(opt, providers, options, level="disable")
                except ModelError as e:  # half-written by a killed run, say: build it again
                    log.warning("the cached optimised model %s cannot be loaded (%s); rebuilding it", opt, e.__cause__)
                    opt.unlink(missing_ok=True)
        return self._session(self.path, providers, options, level=cfg.graph_opt, save_to=opt)

    def _session(self, source: Path, providers: list[str], options: list[dict], *, level: str,
                 save_to: Path | None = None) -> ort.InferenceSession:
        cfg = self.config
        so = ort.SessionOptions()
        so.intra_op_num_threads = cfg.threads
        so.inter_op_num_threads = cfg.inter_threads
        # A spinning intra-op pool on a small CPU starves the decoder threads.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        so.graph_optimization_level = GRAPH_OPT[level]
        if save_to is not None:
            so.optimized_model_filepath = str(save_to)
            so.log_severity_level = 3  # same machine, same cache: the "hardware specific" notice is moot
        try:
            return ort.InferenceSession(str(source), sess_options=so, providers=providers,
                                        provider_options=options)
        except Exception as e:  # onnxruntime raises its own Fail/RuntimeException types
            raise ModelError(f"{source}: onnxruntime cannot build a session on "
                             f"{', '.join(providers)} ({type(e).__name__}: {e})") from e

    @property
    def device(self) -> str:
        return _NAMES.get(self.providers[0], self.providers[0])

    def _feed(self, frames: np.ndarray, audio: np.ndarray, tokens: np.ndarray, present: np.ndarray) -> dict:
        feed = {"frames": frames, "audio": audio, "tokens": tokens, "present": present}
        for name in ("audio", "present"):
            if self._dtypes.get(name) == "tensor(float16)":
                feed[name] = feed[name].astype(np.float16)
        return feed

    def run(self, frames: np.ndarray, audio: np.ndarray, tokens: np.ndarray, present: np.ndarray) -> Outputs:
        """Run one batch of model inputs (shapes as in the contract)."""
        try:
            probs, gates, emb = self.session.run(["probs", "gates", "embedding"],
                                                 self._feed(frames, audio, tokens, present))
        except Exception as e:  # onnxruntime's Fail/InvalidArgument/... derive from Exception only
            raise ModelError(f"{self.path}: onnxruntime failed on a batch of {len(frames)} on {self.device} "
                             f"({type(e).__name__}: {e})") from e
        if np.ndim(probs) != 2 or np.shape(probs)[1] != self.spec.num_classes:  # a dynamic dimension: seen only now
            raise ModelError(f"{self.path}: probs has shape {list(np.shape(probs))}, but avfuse.labels gives "
                             f"[batch, {self.spec.num_classes}]")
        return Outputs(probs=np.asarray(probs, np.float32), gates=np.asarray(gates, np.float32),
                       embedding=np.asarray(emb, np.float32))

    def inputs(self, segments: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stack segments into the model's four inputs, checking they match the model's config."""
        spec = self.spec
        want = (spec.frames, spec.decode.height, spec.decode.width, 3)
        for s in segments:
            if s.frames.shape != want or s.audio.shape != (spec.samples,):
                raise MediaError(f"{s.source} segment {s.index}: frames {s.frames.shape} / audio {s.audio.shape} "
                                 f"do not match the model's {want} / ({spec.samples},)")
        frames = np.stack([s.frames for s in segments])
        audio = np.stack([s.audio for s in segments])
        tokens = spec.tokenizer.encode_batch(s.text for s in segments)
        present = np.stack([s.present.as_array() for s in segments])
        return frames, audio, tokens, present

    def run_segments(self, segments: Sequence[Segment]) -> Outputs:
        return self.run(*self.inputs(segments))

    def warmup(self, batch: int = 1) -> None:
        """One run on blank inputs: TensorRT builds (or loads) its engine here, not on the first segment."""
        spec = self.spec
        self.run(np.zeros((batch, spec.frames, spec.decode.height, spec.decode.width, 3), np.uint8),
                 np.zeros((batch, spec.samples), np.float32),
                 np.zeros((batch, spec.tokenizer.max_len), np.int64),
                 np.zeros((batch, 3), np.float32))
