"""Short epochs drawn afresh from the whole train split (train.train's epoch_images, run_gwk's and
bench/exp_gwk.py's --fresh-images): every epoch trains on that many rows, each epoch on other
rows, and a bad count is refused before any training."""
import dataclasses

import pytest
import torch
from torch import nn

from gwkcuda import pipelines, train
from gwkcuda.gwk import GWKConfig


def rows_seen(epochs, epoch_images, n=100, batch=16):
    """The rows of x that each epoch of train.train trains on, read back through the augment hook
    (x holds each row's own index)."""
    seen = []

    def record(xb, generator):
        seen[-1].extend(xb[:, 0].long().tolist())
        return xb

    x, y = torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n) % 2

    def on_epoch(epoch, loss):
        seen.append([])

    seen.append([])
    train.train(nn.Linear(1, 2), x, y, epochs=epochs, batch=batch, augment=record, epoch_images=epoch_images,
                on_epoch=on_epoch)
    return seen[:-1]


def test_each_epoch_trains_on_as_many_other_rows():
    epochs = rows_seen(4, 30)
    assert [len(rows) for rows in epochs] == [30] * 4
    assert all(len(set(rows)) == 30 for rows in epochs)  # no row twice within an epoch
    assert len({tuple(sorted(rows)) for rows in epochs}) == 4  # and other rows every epoch
    assert len(set().union(*map(set, epochs))) > 60  # a fixed subset would stay at 30
    # None: every row, every epoch, in the same order as before the option existed.
    assert all(sorted(rows) == list(range(100)) for rows in rows_seen(2, None))
    assert rows_seen(1, None)[0] == torch.randperm(100, generator=torch.Generator().manual_seed(0)).tolist()


@pytest.mark.parametrize("bad", [0, 101, 2.5, True])
def test_a_bad_count_is_refused(bad):
    with pytest.raises(ValueError, match=r"expected epoch_images an int in 1\.\.100 .* got"):
        rows_seen(1, bad)


@pytest.fixture(scope="module")
def tiny_task():
    task = pipelines.load_task("digits_cnn", "digits")
    return dataclasses.replace(task, x_train=task.x_train[:128], y_train=task.y_train[:128])


def test_the_chain_trains_every_retraining_epoch_on_that_many_images(digits_model, tiny_task, tmp_path, monkeypatch):
    calls = []
    real = train.train

    def spy(model, x, y, **kw):
        calls.append((kw.get("desc"), len(x), kw.get("epoch_images")))
        return real(model, x, y, **kw)

    monkeypatch.setattr(train, "train", spy)
    config = GWKConfig(d=4, k=16, calib_batches=1, iters=3)
    qat = pipelines.QATConfig(bits=4, epochs=1, delta=0.0)
    with pytest.raises(ValueError, match=r"run_gwk: expected epoch_images an int in 1\.\.128"):
        pipelines.run_gwk(digits_model[0], tiny_task, tmp_path / "x.gwk", config, qat=qat, epoch_images=129)
    assert calls == []  # refused before QAT or any other training
    after_qat = pipelines.run_qat(digits_model[0], tiny_task, qat)
    calls.clear()
    report = pipelines.run_gwk(digits_model[0], tiny_task, tmp_path / "f.gwk", config, epochs=1, qat=qat,
                               after_qat=after_qat, recluster=pipelines.Recluster(1, 1, final="freeze"),
                               epoch_images=40)
    assert calls == [("re-clustering round 1/1", 128, 40), ("codebook fine-tuning", 128, 40)]
    assert report["settings"]["epoch_images"] == 40

