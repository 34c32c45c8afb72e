"""Training: `fit(config) -> RunResult` for CPU, one GPU and DDP (`launch` starts it with torchrun); the paper's loss; `TrainConfig`."""

from sdfl_lib.train.config import TrainConfig
from sdfl_lib.train.engine import NonFiniteLossError, RunResult, fit
from sdfl_lib.train.launch import launch
from sdfl_lib.train.loss import PaperLoss, dice_loss

__all__ = ["NonFiniteLossError", "launch", "PaperLoss", "RunResult", "TrainConfig", "dice_loss", "fit"]
