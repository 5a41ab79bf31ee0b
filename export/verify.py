"""Check an exported file against PyTorch, on real decoded segments, before it is called a model.

PyTorch's exporters have shipped silent numeric bugs (a GRU exported with the wrong
``linear_before_reset``, for one), so every export is run and compared:

- ``onnx.checker`` full check (with shape inference);
- onnxruntime CPU against PyTorch eager at batch 1 and batch 5: max |probs difference| <= tolerance and
  the same top-1 class;
- portability: OpenVINO's CPU runtime (if installed) and ``onnx.reference`` (pure numpy, slow: batch 1,
  a few rows) must give the same top-1 class.

Rows come from real media decoded by the runtime's own decoder; each is used twice, once as decoded and
once with caption tokens filled in, because the real clip has no captions and a text encoder that is
multiplied by ``present = 0`` would hide a broken GRU.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avfuse.stream.errors import DependencyError, ModelError
from avfuse.stream.infer.modelspec import INPUTS, OUTPUTS
from avfuse.stream.infer.tokenize import Tokenizer
from avfuse.stream.media.segment import Segment

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """Allowed difference of ``probs`` from the fp32 PyTorch model.

    ``max_abs``: largest absolute difference of any probability. Top-1 must agree on every row whose
    reference top-1 leads the runner-up by more than ``top1_margin`` (for the looser variants, rows
    closer than twice ``max_abs`` may flip legitimately, since each probability can move by ``max_abs``).
    """

    name: str
    max_abs: float
    top1_margin: float = 0.0


FP32 = Tolerance(name="fp32", max_abs=1e-4)
# int8 (static QDQ, activations and weights): errors of a few percent of a probability are normal.
INT8 = Tolerance(name="int8", max_abs=0.1, top1_margin=0.2)
# fp16 weights and activations (frontend and GRU kept in fp32): about three significant digits.
FP16 = Tolerance(name="fp16", max_abs=1e-2, top1_margin=0.02)


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """A batch of model inputs as numpy arrays, in the contract's dtypes."""

    frames: np.ndarray  # uint8 [N, T, H, W, 3]
    audio: np.ndarray  # float32 [N, S]
    tokens: np.ndarray  # int64 [N, L]
    present: np.ndarray  # float32 [N, 3]

    def __len__(self) -> int:
        return len(self.frames)

    def feed(self, idx: slice | Sequence[int] | np.ndarray = slice(None)) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name)[idx]) for name in INPUTS}

    def take(self, idx: Sequence[int] | np.ndarray) -> Inputs:
        return Inputs(**self.feed(np.asarray(idx)))

    @staticmethod
    def concat(parts: Iterable[Inputs]) -> Inputs:
        parts = list(parts)
        return Inputs(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in INPUTS})


def inputs_from_segments(segments: Sequence[Segment], tokenizer: Tokenizer) -> Inputs:
    if not segments:
        raise ModelError("no segments to build model inputs from")
    return Inputs(frames=np.stack([s.frames for s in segments]), audio=np.stack([s.audio for s in segments]),
                  tokens=tokenizer.encode_batch(s.text for s in segments),
                  present=np.stack([s.present.as_array() for s in segments]))


def with_text(inputs: Inputs, tokenizer: Tokenizer, *, seed: int = 0) -> Inputs:
    """The same rows with caption tokens of random length drawn from the vocabulary, text marked present."""
    rng = np.random.default_rng(seed)
    n, length = inputs.tokens.shape
    tokens = np.zeros((n, length), np.int64)
    for i in range(n):
        k = int(rng.integers(1, length + 1))
        tokens[i, :k] = rng.integers(1, len(tokenizer), size=k)
    present = inputs.present.copy()
    present[:, 2] = 1.0
    return Inputs(frames=inputs.frames, audio=inputs.audio, tokens=tokens, present=present)


def decode_sources(sources: Iterable[str | os.PathLike], *, decode: dict, tokenizer: Tokenizer,
                   limit: int = 8) -> Inputs:
    """Up to ``limit`` segments from each source, decoded with the model's own decode config."""
    from avfuse.stream.media.config import configs_from_metadata
    from avfuse.stream.media.segmenter import iter_segments

    decode_cfg, segment_cfg = configs_from_metadata(decode)
    parts = []
    for source in sources:
        with contextlib.closing(iter_segments(source, decode=decode_cfg, segment=segment_cfg)) as segs:
            segments = list(itertools.islice(segs, limit))  # closing: the decode thread stops now
        log.info("verification: %d segments from %s", len(segments), source)
        if segments:
            parts.append(inputs_from_segments(segments, tokenizer))
    if not parts:
        raise ModelError("none of the verification sources gave a segment")
    return Inputs.concat(parts)


def verification_rows(inputs: Inputs, tokenizer: Tokenizer, *, rows: int = 5) -> Inputs:
    """``rows`` segments as decoded plus the same ``rows`` with captions (cycled if there are fewer)."""
    picked = inputs.take(np.arange(rows) % len(inputs))
    return Inputs.concat([picked, with_text(picked, tokenizer)])


# --- runners: each returns {output name: array} for all rows, run in chunks of ``batch`` ---------------

def chunks(n: int, batch: int) -> list[slice]:
    return [slice(i, min(i + batch, n)) for i in range(0, n, batch)]


def _stack(results: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def run_torch(model, inputs: Inputs, *, batch: int) -> dict[str, np.ndarray]:
    import torch

    model = model.eval()
    out = []
    with torch.inference_mode():
        for sl in chunks(len(inputs), batch):
            feed = inputs.feed(sl)
            result = model(*(torch.from_numpy(feed[n]) for n in INPUTS))
            out.append({name: t.numpy() for name, t in zip(OUTPUTS, result, strict=True)})
    return _stack(out)


def ort_session(path: Path):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's own exception types
        raise ModelError(f"{path}: onnxruntime cannot load the exported file ({e})") from e


def run_onnxruntime(path_or_session, inputs: Inputs, *, batch: int) -> dict[str, np.ndarray]:
    session = ort_session(path_or_session) if isinstance(path_or_session, str | Path) else path_or_session
    out = [dict(zip(OUTPUTS, session.run(list(OUTPUTS), inputs.feed(sl)), strict=True))
           for sl in chunks(len(inputs), batch)]
    return _stack(out)


def run_openvino(path: Path, inputs: Inputs, *, batch: int) -> dict[str, np.ndarray]:
    try:
        import openvino as ov
    except ImportError as e:
        raise DependencyError("openvino is not installed (pip install 'avfuse[train]')") from e
    try:
        compiled = ov.Core().compile_model(str(path), "CPU")
        out = []
        for sl in chunks(len(inputs), batch):
            result = compiled(inputs.feed(sl))
            out.append({name: np.asarray(result[compiled.output(name)]) for name in OUTPUTS})
    except RuntimeError as e:  # OpenVINO reports conversion and inference failures as RuntimeError
        raise ModelError(f"{path}: OpenVINO's CPU runtime cannot run the exported file ({e})") from e
    return _stack(out)


def run_reference(path: Path, inputs: Inputs) -> dict[str, np.ndarray]:
    """onnx.reference.ReferenceEvaluator (numpy, slow), one row at a time."""
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(str(path))
        out = [dict(zip(OUTPUTS, evaluator.run(list(OUTPUTS), inputs.feed(sl)), strict=True))
               for sl in chunks(len(inputs), 1)]
    except Exception as e:  # the evaluator raises whatever its numpy kernels raise
        raise ModelError(f"{path}: onnx.reference cannot run the exported file ({type(e).__name__}: {e})") from e
    return _stack(out)


# --- comparison ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Comparison:
    what: str  # e.g. "onnxruntime batch 5"
    rows: int
    max_abs: float  # of probs
    top1_agree: int  # rows with the same top-1 class
    top1_required: int  # rows whose reference margin obliges agreement
    top1_missed: int  # of those, rows that disagree
    ok: bool
    seconds: float

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.what:<28} rows {self.rows:>3}  max|dprobs| {self.max_abs:.2e}  "
                f"top-1 agree {self.top1_agree}/{self.rows}  {verdict}  ({self.seconds:.1f} s)")


def compare(what: str, reference: dict[str, np.ndarray], got: dict[str, np.ndarray], tol: Tolerance | None, *,
            seconds: float = 0.0) -> Comparison:
    """Compare ``probs``; ``tol=None`` checks top-1 only (portability runs)."""
    ref, out = reference["probs"], got["probs"]
    if ref.shape != out.shape:
        raise ModelError(f"{what}: probs shape {out.shape} differs from PyTorch's {ref.shape}")
    max_abs = float(np.abs(ref - out).max()) if ref.size else 0.0
    same = ref.argmax(1) == out.argmax(1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    required = (top2[:, 1] - top2[:, 0]) > (tol.top1_margin if tol else 0.0)
    missed = int((required & ~same).sum())
    ok = missed == 0 and (tol is None or max_abs <= tol.max_abs) and bool(np.isfinite(out).all())
    return Comparison(what=what, rows=len(ref), max_abs=max_abs, top1_agree=int(same.sum()),
                      top1_required=int(required.sum()), top1_missed=missed, ok=ok, seconds=seconds)


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def check_structure(path: Path) -> None:
    """``onnx.checker`` full check (includes strict shape inference)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelError(f"{path}: the ONNX checker rejects the exported file: {e}") from e


@dataclass(frozen=True, kw_only=True)
class Report:
    path: Path
    comparisons: tuple[Comparison, ...]
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def lines(self) -> list[str]:
        return [c.line() for c in self.comparisons] + [f"skipped: {s}" for s in self.skipped]


def _checked(report: Report, failure: str) -> Report:
    """Log every comparison; raise ModelError naming the file and the failed ones if any failed."""
    for line in report.lines():
        log.info("verify %s: %s", report.path.name, line)
    if not report.ok:
        failed = "; ".join(c.line() for c in report.comparisons if not c.ok)
        raise ModelError(f"{report.path}: {failure}: {failed}")
    return report


def verify_fp32(model, path: Path, rows: Inputs, *, portability: bool = True, reference_rows: int = 2) -> Report:
    """The full check of a freshly exported fp32 file; raises ModelError listing what failed."""
    check_structure(path)
    comparisons, skipped = [], []
    session = ort_session(path)
    for batch in (1, 5):
        ref, _ = _timed(run_torch, model, rows, batch=batch)
        got, secs = _timed(run_onnxruntime, session, rows, batch=batch)
        comparisons.append(compare(f"onnxruntime CPU batch {batch}", ref, got, FP32, seconds=secs))
    if portability:
        ref = run_torch(model, rows, batch=5)
        try:
            got, secs = _timed(run_openvino, path, rows, batch=5)
            comparisons.append(compare("openvino CPU batch 5", ref, got, None, seconds=secs))
        except DependencyError as e:
            skipped.append(f"openvino: {e}")
        # one row as decoded and the same row with captions: the text path runs in the reference too
        half = len(rows) // 2
        idx = [i for k in range(reference_rows // 2 or 1) for i in (k, half + k)][:max(reference_rows, 1)]
        sub = rows.take(idx)
        got, secs = _timed(run_reference, path, sub)
        comparisons.append(compare("onnx.reference batch 1", {k: v[idx] for k, v in ref.items()}, got, None,
                                   seconds=secs))
    return _checked(Report(path=path, comparisons=tuple(comparisons), skipped=tuple(skipped)),
                    "exported model disagrees with PyTorch")


def verify_variant(reference: dict[str, np.ndarray], path: Path, rows: Inputs, tol: Tolerance) -> Report:
    """An int8 or fp16 file against the fp32 PyTorch outputs, with the variant's looser tolerance."""
    check_structure(path)
    session = ort_session(path)
    comparisons = []
    for batch in (1, 5):
        got, secs = _timed(run_onnxruntime, session, rows, batch=batch)
        comparisons.append(compare(f"{tol.name} onnxruntime batch {batch}", reference, got, tol, seconds=secs))
    return _checked(Report(path=path, comparisons=tuple(comparisons)),
                    f"{tol.name} model is outside its tolerance (max |dprobs| <= {tol.max_abs}, "
                    f"same top-1 where the margin > {tol.top1_margin})")
