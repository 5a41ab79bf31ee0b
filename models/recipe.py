"""The default training recipe, in one place and without torch: :class:`TrainConfig` (what ``avfuse train``
trains with no tuning flags, and what ``avfuse bench quality`` measures), the decode settings it trains on, and
the names the choices come from. ``avfuse train``'s flags take their defaults from here (its parser builds
without torch), and :class:`~avfuse.models.net.ModelConfig` its network defaults."""

from __future__ import annotations

from dataclasses import dataclass

from avfuse.stream.errors import ConfigError
from avfuse.stream.media.segment import MODALITIES

FUSIONS = ("gated", "concat", "sequential")
BACKBONES = ("tiny", "mobilenet_v3_small", "resnet18", "efficientnet_b0")
POOLINGS = ("mean", "attention")
TEXTURES = ("invariant", "oriented", "none")  # the image encoder's fixed texture energies (models/image.py)
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("staged", "joint")
KEEPS = ("last", "best")  # which epoch's weights training keeps


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    fusion: str = "gated"
    modalities: tuple[str, ...] = MODALITIES
    backbone: str = "tiny"  # trained from scratch, offline: 50-92% held-out where mobilenet_v3_small got 31%
    pooling: str = "mean"
    texture: str = "invariant"  # fixed Gabor texture energies beside the backbone's features (models/image.py)
    pretrained: bool = False
    dim: int = 64
    n_mels: int = 40
    hop_length: int = 320  # 20 ms at 16 kHz: enough time resolution for segment labels, half the work of 10 ms
    max_tokens: int = 16
    modality_dropout: float = 0.4
    augment: bool = True  # per segment: horizontal flip and brightness/contrast jitter of frames, audio gain
    strong_augment: bool = True  # and shifts, colour gains, noise, shuffled and dropped words (see augment)
    colour_orders: float = 0.0  # strong: share of segments whose colour channels are put in a random order
    unimodal_weight: float = 1.0  # weight of the per-modality auxiliary classifiers' loss (0: off)
    schedule: str = "joint"  # joint: all from the start; staged: each encoder learns alone first, then fused
    stage_epochs: int = 8  # staged: epochs of the unimodal stage (not counted in ``epochs``)
    class_weights: bool = True  # weight the loss by inverse class frequency (unequal classes)
    epochs: int = 30
    # last: the weights at the end of the cosine schedule, every epoch run; best: those of the epoch with the best
    # validation macro-F1, stopping after ``patience`` epochs without a better one (10 validation files make that
    # choice noisy: the last epoch did better on the suite, see models/train.py)
    keep: str = "last"
    patience: int = 10  # keep="best": epochs without a better validation macro-F1 before stopping
    # after training, this many shares of the training files each held out once (the first is validation), so
    # that the served model reads its classifiers through their held-out confusions (models/cross_fit.py);
    # costs cross_fit_folds - 1 more trainings; 0 or 1: off, the fused head alone
    cross_fit_folds: int = 4
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    seed: int = 0
    device: str = "cpu"
    threads: int = 0  # torch CPU threads; 0 keeps torch's default (one per core)
    progress: bool = True  # a tqdm bar per epoch (shown on a terminal only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        v = self
        checks = [(v.fusion in FUSIONS, f"fusion must be one of {FUSIONS}, got {v.fusion!r}"),
                  (bool(v.modalities) and set(v.modalities) <= set(MODALITIES),
                   f"modalities must be a non-empty subset of {MODALITIES}, got {v.modalities!r}"),
                  (v.backbone in BACKBONES, f"backbone must be one of {BACKBONES}, got {v.backbone!r}"),
                  (v.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {v.pooling!r}"),
                  (v.texture in TEXTURES, f"texture must be one of {TEXTURES}, got {v.texture!r}"),
                  (v.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {v.optimizer!r}"),
                  (v.device in ("cpu", "cuda"), f"device must be cpu or cuda, got {v.device!r}"),
                  (v.epochs >= 1 and v.batch_size >= 1 and v.patience >= 1,
                   f"epochs, batch_size and patience must be >= 1, got {v.epochs}, {v.batch_size}, {v.patience}"),
                  (v.lr > 0 and v.weight_decay >= 0,
                   f"lr must be > 0 and weight_decay >= 0, got {v.lr}, {v.weight_decay}"),
                  (v.threads >= 0, f"threads must be >= 0, got {v.threads}"),
                  (v.unimodal_weight >= 0, f"unimodal_weight must be >= 0, got {v.unimodal_weight}"),
                  (v.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {v.schedule!r}"),
                  (v.keep in KEEPS, f"keep must be one of {KEEPS}, got {v.keep!r}"),
                  (v.stage_epochs >= 1, f"stage_epochs must be >= 1, got {v.stage_epochs}"),
                  (v.cross_fit_folds >= 0, f"cross_fit_folds must be >= 0, got {v.cross_fit_folds}"),
                  (0.0 <= v.colour_orders <= 1.0, f"colour_orders must be in [0, 1], got {v.colour_orders}")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


# what training decodes: frames per second, frame size (W, H) and window, unless told otherwise
TRAIN_FPS = 2.0
TRAIN_SIZE = (64, 64)
TRAIN_WINDOW_S = 2.0
