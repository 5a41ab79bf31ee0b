"""Save and load a trained model: ``model.pt`` (plain types only, loadable with weights_only=True)
plus a readable ``config.json`` beside it.

The file holds a format marker and version, the avfuse version, the state dict, the ModelConfig
as a dict, the ``avfuse.decode`` dict the data was decoded with, the tokenizer as JSON, the
validation metrics and the training arguments: everything export needs to write one
self-describing ONNX file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from avfuse import __version__
from avfuse.models.net import AvfuseNet, ModelConfig, build_model
from avfuse.stream.errors import AvfuseError, ModelError
from avfuse.stream.infer.tokenize import Tokenizer

log = logging.getLogger(__name__)

FORMAT = "avfuse-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "model.pt"
CONFIG_NAME = "config.json"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    path: Path
    format_version: int
    version: str  # avfuse version that wrote it
    config: ModelConfig
    decode: dict  # avfuse.decode metadata (avfuse.stream.media.config.decode_metadata)
    tokenizer: Tokenizer
    metrics: dict
    train_args: dict


def save_checkpoint(path: str | Path, model: nn.Module, *, config: ModelConfig, decode: dict, tokenizer: Tokenizer,
                    metrics: dict, train_args: dict) -> Path:
    """Write ``path`` (a ``.pt`` file, or a directory to hold ``model.pt``) and ``config.json`` beside it."""
    path = Path(path)
    if path.suffix != ".pt":
        path = path / CHECKPOINT_NAME
    # refuse here what load_checkpoint would refuse later, when the run that made it is gone
    if getattr(model, "config", config) != config:
        raise ModelError(f"{path}: the model was built from another config than the one to save: "
                         f"{model.config} vs {config}")
    if len(tokenizer) != config.vocab_size:
        raise ModelError(f"{path}: tokenizer has {len(tokenizer)} words but config.vocab_size is {config.vocab_size}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    blob = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "avfuse_version": __version__,
        "state_dict": state, "config": config.to_dict(), "decode": dict(decode),
        "tokenizer": tokenizer.to_json(), "metrics": json.loads(json.dumps(metrics)),
        "train_args": json.loads(json.dumps(train_args, default=str)),
    }
    _write_atomic(path, lambda f: torch.save(blob, f))
    readable = {k: v for k, v in blob.items() if k not in ("state_dict", "tokenizer")}
    readable["vocab_size"] = len(tokenizer)
    text = (json.dumps(readable, indent=2) + "\n").encode()
    _write_atomic(path.parent / CONFIG_NAME, lambda f: f.write(text))
    log.info("saved checkpoint %s", path)
    return path


def _write_atomic(path: Path, write) -> None:
    """``write(file)`` into a unique temporary file beside ``path``, then rename it into place: a reader
    never sees a half-written file, and a failed write leaves the old file and no temporary behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for foreign bytes (KeyError, UnpicklingError, ...)
        raise ModelError(f"{path}: not a readable avfuse checkpoint (truncated, corrupt, not a torch file, or "
                         f"holding objects other than plain types): {type(e).__name__}: {e}") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path}: not an avfuse checkpoint (no '{FORMAT}' format marker); "
                         "train one with 'avfuse train'")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format version {blob.get('format_version')!r}, this avfuse "
                         f"({__version__}) reads version {FORMAT_VERSION}")
    missing = [k for k in ("state_dict", "config", "decode", "tokenizer") if k not in blob]
    if missing:
        raise ModelError(f"{path}: checkpoint lacks {', '.join(missing)}")
    wrong = [k for k in ("state_dict", "config", "decode") if not isinstance(blob[k], dict)]
    if wrong or not all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values()):
        raise ModelError(f"{path}: checkpoint fields {wrong or ['state_dict']} are not of the expected form "
                         "(dicts; the state dict of tensors)")
    return blob


def _load_state(path: Path, model: AvfuseNet, state: dict) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append(f"shape mismatch (checkpoint vs config) {shapes[:5]}")
        raise ModelError(f"{path}: the weights do not match the saved model config "
                         f"(fusion={model.config.fusion}, modalities={list(model.config.modalities)}, "
                         f"backbone={model.config.image_backbone}, dim={model.config.dim}): {'; '.join(parts)}")
    model.load_state_dict(state)


def load_checkpoint(path: str | Path) -> tuple[AvfuseNet, Checkpoint]:
    """Rebuild the model (in eval mode, on CPU) from ``path`` (``model.pt`` or its run directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    blob = _read(path)
    try:
        config = ModelConfig.from_dict(blob["config"])
        tokenizer = Tokenizer.from_json(blob["tokenizer"])
    except (AvfuseError, TypeError) as e:
        raise ModelError(f"{path}: checkpoint config is invalid: {e}") from e
    if len(tokenizer) != config.vocab_size:
        raise ModelError(f"{path}: tokenizer has {len(tokenizer)} words but the model config says "
                         f"vocab_size={config.vocab_size}")
    model = build_model(config)
    _load_state(path, model, blob["state_dict"])
    model.eval()
    ckpt = Checkpoint(path=path, format_version=int(blob["format_version"]), version=str(blob.get("avfuse_version")),
                      config=config, decode=dict(blob["decode"]), tokenizer=tokenizer,
                      metrics=dict(blob.get("metrics") or {}), train_args=dict(blob.get("train_args") or {}))
    return model, ckpt
