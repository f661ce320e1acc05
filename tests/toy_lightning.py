"""A linear-regression LightningModule trained with the recipe's optimiser and schedule
(``adamw_warmup_cosine``) and ``train.py``'s Trainer settings, for tests of the training
machinery that need exact numbers (accumulation, checkpoint policy)."""

from typing import Optional, Sequence

import torch
from pytorch_lightning import LightningModule

from espnet.training import train_cli, training_run
from espnet.training.scheduler import adamw_warmup_cosine


def toy_data(n: int = 8, dim: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


class LinearToy(LightningModule):
    """``y = W x + b`` on :func:`toy_data`, mean squared error per batch (unshuffled batches of
    ``batch_size``). ``val_losses``: the ``loss_val`` logged at each epoch's validation
    (scripted, to drive a checkpoint policy); without it there is no validation."""

    def __init__(self, batch_size: int, lr: float = 0.1, warmup_epochs: int = 1, max_epochs: int = 3,
                 val_losses: Optional[Sequence[float]] = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = torch.nn.Linear(3, 1)
        self.batch_size = batch_size
        self.lr, self.warmup_epochs, self.max_epochs = lr, warmup_epochs, max_epochs
        self.val_losses = list(val_losses) if val_losses is not None else None
        self.data = toy_data()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*self.data), batch_size=self.batch_size)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y)

    def val_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*self.data), batch_size=8)

    def validation_step(self, batch, batch_idx):
        if self.val_losses is None:
            return
        self.log("loss_val", float(self.val_losses[self.current_epoch]), on_epoch=True, batch_size=8)

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.parameters(), self.trainer, self.lr, 0.03, self.warmup_epochs, self.max_epochs)


def fit_toy(module: LinearToy, run_dir: str, *flags: str, callbacks=()):
    """Fit ``module`` with the Trainer ``train.py`` builds for ``flags``; returns the trainer."""
    args = train_cli.parse_args(["--root-dir", run_dir, "--train-file", "t.csv", "--accelerator", "cpu",
                                 "--max-epochs", str(module.max_epochs),
                                 *(["--val-file", "v.csv"] if module.val_losses is not None else []), *flags])
    trainer = training_run.build_trainer(args, run_dir, list(callbacks), logger=False)
    trainer.fit(module)
    return trainer
