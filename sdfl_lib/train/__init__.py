"""Training: `fit(config) -> RunResult` for CPU, one GPU and DDP; the paper's loss; `TrainConfig`."""

from sdfl_lib.train.config import TrainConfig
from sdfl_lib.train.engine import NonFiniteLossError, RunResult, fit
from sdfl_lib.train.loss import PaperLoss, dice_loss

__all__ = ["NonFiniteLossError", "PaperLoss", "RunResult", "TrainConfig", "dice_loss", "fit"]
