"""Training: one function, read top to bottom.

``train(train_set, val_set, config=..., decode=...)`` builds the tokenizer from the training captions, the
model from the data's shapes, then trains the whole model, fused, with each modality's own linear classifier's
loss as an auxiliary term (``schedule="joint"``, the default). ``schedule="staged"`` first trains each
modality's encoder alone, through its own classifier, for ``stage_epochs``, then fuses: on the generalisation
suite (``avfuse bench quality``) it did worse than joint on two sets of three (79 against 92%, 54 against 67%
held-out) and better on one (100 against 97%). Each stage runs AdamW (or SGD) with a cosine schedule; the loss
weights classes by inverse frequency (``class_weights``). The fused stage evaluates macro-F1 on the validation
set after every epoch and keeps the weights of its last epoch (``keep="last"``, the default), or those of the
epoch with the best validation macro-F1, stopping early when it has not improved for ``patience`` epochs
(``keep="best"``). On the suite's three factor sets over seeds 0-2 the last epoch did better (90.5 against
88.4% mean held-out): ten validation files make the best epoch a noisy pick. With a seed, a CPU run is
repeatable. On CUDA it trains in mixed precision (bfloat16 autocast where the GPU has it, else float16 with a
gradient scaler). Started by torchrun, it trains as one of its DistributedDataParallel ranks (see
:mod:`avfuse.models.distributed`); in one process those hooks change nothing.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from avfuse.models import distributed
from avfuse.models.evaluate import Tensors, evaluate, to_tensors
from avfuse.models.net import AvfuseNet, ModelConfig, build_model
from avfuse.models.recipe import TrainConfig
from avfuse.stream.errors import ConfigError, DataError
from avfuse.stream.infer.tokenize import Tokenizer

log = logging.getLogger(__name__)

@dataclass(frozen=True, kw_only=True)
class TrainResult:
    model: AvfuseNet  # the kept weights (TrainConfig.keep), in eval mode, on CPU
    config: ModelConfig
    tokenizer: Tokenizer
    metrics: dict  # validation metrics of the kept epoch (train metrics when there is no validation set)
    best_epoch: int  # the kept epoch: the last, or the best on validation (TrainConfig.keep)
    history: list[dict] = field(default_factory=list)  # the fused stage, one row per epoch
    stage_history: list[dict] = field(default_factory=list)  # the staged schedule's unimodal stage
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but torch sees no CUDA GPU "
                          f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use --device cpu")
    return torch.device(name)


def model_config(train_set, cfg: TrainConfig, decode: dict, tokenizer: Tokenizer) -> ModelConfig:
    """The network's shape from the data (T, H, W, S) and the training choices."""
    _, t, h, w, _ = train_set.frames.shape
    return ModelConfig(labels=tuple(train_set.label_names), frames=t, height=h, width=w,
                       sample_rate=int(decode["sample_rate"]), samples=int(train_set.audio.shape[1]),
                       vocab_size=len(tokenizer), max_tokens=tokenizer.max_len, image_backbone=cfg.backbone,
                       pooling=cfg.pooling, texture=cfg.texture, fusion=cfg.fusion, modalities=cfg.modalities,
                       dim=cfg.dim, n_mels=cfg.n_mels, hop_length=cfg.hop_length, modality_dropout=cfg.modality_dropout)


def augment(frames: torch.Tensor, audio: torch.Tensor, tokens: torch.Tensor | None = None, *, strong: bool = False,
            colour_orders: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Label-preserving jitter per segment: frames flipped left-right half the time and scaled in contrast and
    shifted in brightness (still uint8); audio scaled by a gain of 0.5..1.5.

    ``strong`` adds what keeps a small data set from being learnt by heart (each file's own colours, each
    caption's own word order): frames shifted by up to an eighth of their size, each colour channel scaled
    by 0.8..1.2, and a ``colour_orders`` share of the segments' colour channels put in a random order (so that
    what a video shows, its shapes and textures, is learnt rather than each training file's colours: for data
    whose colours are an accident of each file, not of its class); audio shifted in time (circularly) and
    mixed with noise 20..40 dB below it; the caption's words shuffled and each dropped with chance 0.2 (a
    caption left with no word counts as no text)."""
    b = frames.shape[0]
    flip = torch.rand(b, device=frames.device) < 0.5
    frames = torch.where(flip.view(b, 1, 1, 1, 1), frames.flip(3), frames)
    contrast = torch.empty(b, 1, 1, 1, 1, device=frames.device).uniform_(0.7, 1.3)
    brightness = torch.empty(b, 1, 1, 1, 1, device=frames.device).uniform_(-25, 25)
    x = frames.float()
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    gain = torch.empty(b, 1, device=audio.device).uniform_(0.5, 1.5)
    audio = audio * gain
    if strong:
        x = x * torch.empty(b, 1, 1, 1, 3, device=x.device).uniform_(0.8, 1.2)
        if colour_orders > 0:
            x = x.gather(4, _channel_orders(b, x.device, share=colour_orders).view(b, 1, 1, 1, 3).expand_as(x))
        h, w = x.shape[2], x.shape[3]
        dy, dx = int(torch.randint(-(h // 8), h // 8 + 1, ())), int(torch.randint(-(w // 8), w // 8 + 1, ()))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))  # one shift per batch: cheap, and frames stay whole
        shift = int(torch.randint(0, audio.shape[1], (1,)))
        audio = torch.roll(audio, shifts=shift, dims=1)
        rms = audio.pow(2).mean(dim=1, keepdim=True).sqrt()
        snr = torch.empty(b, 1, device=audio.device).uniform_(20, 40)
        audio = audio + torch.randn_like(audio) * rms * 10 ** (-snr / 20)
        if tokens is not None:
            tokens = shuffle_and_drop_words(tokens, drop=0.2)
    return x.round().clamp(0, 255).to(torch.uint8), audio, tokens


def _channel_orders(b: int, device: torch.device, *, share: float) -> torch.Tensor:
    """int64 [b, 3]: for ``share`` of the rows a random order of the three colour channels, else 0, 1, 2."""
    orders = torch.rand(b, 3, device=device).argsort(dim=1)
    keep = torch.rand(b, 1, device=device) >= share
    return torch.where(keep, torch.arange(3, device=device).expand(b, 3), orders)


def shuffle_and_drop_words(tokens: torch.Tensor, *, drop: float) -> torch.Tensor:
    """tokens [B, L] (0 = padding): each row's words in a random order, each dropped with chance ``drop``,
    the rest packed to the front."""
    keep = tokens.ne(0) & (torch.rand(tokens.shape, device=tokens.device) >= drop)
    keys = torch.where(keep, torch.rand(tokens.shape, device=tokens.device),
                       torch.full(tokens.shape, 2.0, device=tokens.device))
    order = keys.argsort(dim=1)
    return torch.where(keep.gather(1, order), tokens.gather(1, order), torch.zeros_like(tokens))


def unimodal_loss(per_modality: torch.Tensor, present: torch.Tensor, labels: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each modality's own classifier, averaged over the segments that have the modality
    (``weight``: one per class, as in ``cross_entropy``)."""
    b, m, c = per_modality.shape
    ce = torch.nn.functional.cross_entropy(per_modality.reshape(b * m, c), labels.repeat_interleave(m),
                                           reduction="none").view(b, m)
    w = present if weight is None else present * weight[labels].unsqueeze(1)
    return ((ce * w).sum(dim=0) / w.sum(dim=0).clamp(min=1e-6)).sum()


def balanced_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """One loss weight per class, inversely proportional to its training segments and averaging 1 over the
    segments (a class with none gets 0)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    w = np.divide(len(labels) / max(1, (counts > 0).sum()), counts, out=np.zeros(num_classes), where=counts > 0)
    return torch.tensor(w, dtype=torch.float32)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def unimodal_parameters(model: AvfuseNet) -> list[torch.nn.Parameter]:
    """The encoders and their own classifiers: what the staged schedule's first stage trains."""
    parts = [model.video, model.audio, model.text, model.unimodal]
    return [p for part in parts if part is not None for p in part.parameters()]


def _check(train_set, val_set) -> None:
    if len(train_set.labels) == 0:
        raise DataError("the training set has no segments")
    present = np.unique(train_set.labels)
    if len(present) < 2:
        raise DataError(f"the training set has only one class ({train_set.label_names[present[0]]!r}); "
                        "a classifier needs at least two")
    if val_set is not None and tuple(val_set.label_names) != tuple(train_set.label_names):
        raise DataError(f"validation labels {val_set.label_names} differ from training labels "
                        f"{train_set.label_names}")


def train(train_set, val_set=None, *, config: TrainConfig, decode: dict) -> TrainResult:
    """Train on ``train_set`` (a avfuse.models.data.SegmentSet), select on ``val_set`` (or the training set if None)."""
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(train_set, val_set, config=config, decode=decode)
    finally:
        torch.set_num_threads(threads)


def _train(train_set, val_set, *, config: TrainConfig, decode: dict) -> TrainResult:
    began = time.perf_counter()
    cfg = config
    _check(train_set, val_set)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)

    tokenizer = Tokenizer.build(train_set.texts, max_len=cfg.max_tokens)
    mcfg = model_config(train_set, cfg, decode, tokenizer)
    model = build_model(mcfg, pretrained=cfg.pretrained).to(device)
    distributed.seed_rank(cfg.seed)
    data = to_tensors(train_set, tokenizer)
    val = to_tensors(val_set, tokenizer) if val_set is not None and len(val_set.labels) else None
    log.info("training %s fusion on %s: %d train / %d val segments, %d classes, %d parameters, device %s",
             cfg.fusion, "+".join(cfg.modalities), len(data), len(val) if val else 0, len(mcfg.labels),
             sum(p.numel() for p in model.parameters()), device)

    weight = balanced_weights(data.labels.numpy(), len(mcfg.labels)).to(device) if cfg.class_weights else None
    loop = _Loop(model=model, data=data, cfg=cfg, device=device, weight=weight)
    history: list[dict] = []
    stage_history: list[dict] = []
    if cfg.schedule == "staged":  # each encoder learns its modality through its own classifier, then all fuse
        loop.start(unimodal_parameters(model), cfg.stage_epochs)
        for epoch in range(1, cfg.stage_epochs + 1):
            loss, _ = loop.epoch(f"unimodal stage {epoch}/{cfg.stage_epochs}", fused=False)
            stage_history.append({"epoch": epoch, "loss": round(loss, 4)})
            log.info("unimodal stage %d/%d: loss %.3f", epoch, cfg.stage_epochs, loss)

    loop.start(model.parameters(), cfg.epochs)
    best_f1, best_epoch, best_state, best_metrics, stale = -1.0, 0, None, {}, 0
    for epoch in range(1, cfg.epochs + 1):
        loss, train_accuracy = loop.epoch(f"epoch {epoch}/{cfg.epochs}", fused=True)
        metrics = distributed.from_main(evaluate, model, val if val is not None else data, batch_size=64,
                                        device=device)  # every rank decides on rank 0's figures
        row = {"epoch": epoch, "loss": round(loss, 4), "train_accuracy": round(train_accuracy, 4),
               "val_accuracy": round(metrics["accuracy"], 4), "val_macro_f1": round(metrics["macro_f1"], 4),
               "lr": loop.schedule.get_last_lr()[0]}
        history.append(row)
        log.info("epoch %d/%d loss %.3f train acc %.3f val acc %.3f val macro-F1 %.3f", epoch, cfg.epochs,
                 row["loss"], row["train_accuracy"], row["val_accuracy"], row["val_macro_f1"])
        if cfg.keep == "last":  # the end of the cosine schedule's weights: nothing to copy or stop on
            best_epoch, best_metrics = epoch, metrics
            continue
        if metrics["macro_f1"] >= best_f1:  # ties go to the later, longer-trained epoch
            stale = 0 if metrics["macro_f1"] > best_f1 else stale + 1
            best_f1, best_epoch, best_metrics = metrics["macro_f1"], epoch, metrics
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if stale >= cfg.patience:
            log.info("validation macro-F1 has not improved for %d epochs: stopping at epoch %d", stale, epoch)
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    model.cpu().eval()
    seconds = time.perf_counter() - began
    log.info("%s epoch %d: val accuracy %.3f, macro-F1 %.3f (%.1f s)", cfg.keep, best_epoch,
             best_metrics["accuracy"], best_metrics["macro_f1"], seconds)
    return TrainResult(model=model, config=mcfg, tokenizer=tokenizer, metrics=best_metrics, best_epoch=best_epoch,
                       history=history, stage_history=stage_history, seconds=seconds)


class _Loop:
    """One stage's optimizer and cosine schedule, and its epochs over the shuffled training set."""

    def __init__(self, *, model: AvfuseNet, data: Tensors, cfg: TrainConfig, device: torch.device,
                 weight: torch.Tensor | None) -> None:
        self.model, self.data, self.cfg, self.device, self.weight = model, data, cfg, device, weight
        self.batch_size, self.steps = distributed.batching(len(data), cfg.batch_size)
        self.forward = distributed.training_forward(model, device, unused=cfg.schedule == "staged")
        self.epochs = 0
        self.amp = device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.shuffle = torch.Generator().manual_seed(cfg.seed)

    def start(self, params, epochs: int) -> None:
        self.optimizer = make_optimizer(params, self.cfg)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=epochs * self.steps)

    def epoch(self, desc: str, *, fused: bool) -> tuple[float, float]:
        """One pass; ``fused`` False trains on the unimodal classifiers' loss alone. -> (mean loss, train
        accuracy of the fused head, 0 when not fused)."""
        cfg, model = self.cfg, self.model
        model.train()
        self.epochs += 1
        order = distributed.epoch_order(len(self.data), seed=cfg.seed, epoch=self.epochs, generator=self.shuffle)
        total, correct, batch = 0.0, 0, self.batch_size
        bar = tqdm(range(self.steps), desc=desc, leave=False, unit="batch", disable=None if cfg.progress else True)
        for step in bar:
            frames, audio, tokens, present, labels = (
                x.to(self.device, non_blocking=True)
                for x in self.data.batch(order[step * batch:(step + 1) * batch]))
            if cfg.augment:
                frames, audio, tokens = augment(frames, audio, tokens, strong=cfg.strong_augment,
                                                colour_orders=cfg.colour_orders)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits, per_modality, real = self.forward(frames, audio, tokens, present)
                aux = unimodal_loss(per_modality.float(), real, labels, self.weight)
                if fused:
                    loss = torch.nn.functional.cross_entropy(logits.float(), labels, weight=self.weight)
                    if cfg.unimodal_weight > 0:
                        loss = loss + cfg.unimodal_weight * aux
                else:
                    loss = aux
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.schedule.step()
            total += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum()) if fused else 0
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        total, correct, seen = distributed.sums(total, correct, len(order))
        return total / seen, correct / seen


def held_out_tensors(result: TrainResult, test_set) -> Tensors:
    """A held-out SegmentSet as tensors for ``result``'s model: its tokenizer, its label order."""
    index = {name: i for i, name in enumerate(result.config.labels)}
    unknown = sorted(set(test_set.label_names) - set(index))
    if unknown:
        raise DataError(f"test set has labels the model was not trained on: {unknown}; model labels "
                        f"{list(result.config.labels)}")
    remap = np.array([index[name] for name in test_set.label_names], dtype=np.int64)
    data = to_tensors(test_set, result.tokenizer)
    return Tensors(frames=data.frames, audio=data.audio, tokens=data.tokens, present=data.present,
                   labels=torch.from_numpy(remap[data.labels.numpy()]))
