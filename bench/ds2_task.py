"""The connected-digit CTC task behind the DeepSpeech2 rows: the float model (trained once, cached
outside the repository, resumable per epoch) and its fixed evaluation sets.

Training draws fresh utterances every epoch from FSDD recordings with index 10-49; the searches
(Bin & Quant's accuracy floor, early choices) use "val" utterances (index 5-9); every reported
error rate is on "test" utterances (index 0-4, the official FSDD test recordings), which no search
and no training step ever sees.
"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gwkcuda import data, digit_sequences as ds  # noqa: E402
from gwkcuda.models import ds2_digits  # noqa: E402

TRAIN_PER_EPOCH, VAL, TEST = 2000, 400, 500
TRAIN_SEED_BASE, VAL_SEED, TEST_SEED = 1000, 1, 2


def eval_sets():
    """(val, test) Utterances, fixed."""
    return ds.connected_digits("val", VAL, VAL_SEED), ds.connected_digits("test", TEST, TEST_SEED)


def train_utterances(epoch: int) -> ds.Utterances:
    return ds.connected_digits("train", TRAIN_PER_EPOCH, TRAIN_SEED_BASE + epoch)


def float_model(epochs: int = 30, seed: int = 0, lr: float = 2e-3, show_progress: bool = False, log=None):
    """(model in eval mode, history): the DS2 model trained for ``epochs`` (cached; a killed run
    resumes from its last epoch). history: per epoch the mean training loss and the val digit
    error rate, and the seconds each epoch's training took."""
    stem = data.cache_dir() / f"ds2_digits_e{epochs}_s{seed}"
    weights, ckpt, hist_path = stem.with_suffix(".pt"), stem.with_suffix(".ckpt"), stem.with_suffix(".history.pt")
    model = ds2_digits()
    if weights.exists():
        model.load_state_dict(torch.load(weights, weights_only=True))
        return model.eval(), torch.load(hist_path, weights_only=True)
    torch.manual_seed(seed)
    history = torch.load(hist_path, weights_only=True) if ckpt.exists() and hist_path.exists() else \
        {"loss": [], "val_der": [], "epoch_seconds": []}
    val, _ = eval_sets()
    mark = [time.perf_counter()]

    def on_epoch(epoch, loss):
        history["epoch_seconds"].append(time.perf_counter() - mark[0])  # data, forward, backward, step
        der = ds.evaluate(model, val)["digit_error_rate"]
        history["loss"].append(loss)
        history["val_der"].append(der)
        torch.save(history, hist_path)
        if log:
            log(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}, val digit error rate {100 * der:.2f}%, "
                f"{history['epoch_seconds'][-1]:.0f} s")
        mark[0] = time.perf_counter()

    ds.train_ctc(model, train_utterances, epochs=epochs, lr=lr, seed=seed, checkpoint=ckpt,
                 on_epoch=on_epoch, show_progress=show_progress)
    tmp = weights.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, weights)
    return model.eval(), history
