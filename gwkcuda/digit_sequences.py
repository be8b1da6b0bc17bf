"""Connected spoken digits from the Free Spoken Digit Dataset, for CTC models (DeepSpeech2-style):
each utterance is 2-7 real FSDD recordings joined by short random silences, its label the digit
string, its features a log-spectrogram.

Splits follow the FSDD recording index so that no recording heard in a test utterance is ever
trained on: "test" uses index 0-4 only (the official FSDD test recordings), "val" (for searches
and early stopping) index 5-9, "train" index 10-49. Each split's utterances are a pure function
of (split, count, seed): the recordings' audio is decoded once and cached outside the repository,
the utterances are rebuilt from it in seconds. Training draws fresh utterances every epoch
(``seed`` = the epoch), which is augmentation for free.

Metrics: greedy CTC decoding (best path, repeats merged, blanks dropped); the digit error rate is
the edit distance summed over utterances over the reference digits summed; sequence accuracy is
the fraction of utterances decoded exactly.
"""
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np
import torch

from . import data
from .progress import progress
from .train import TrainingDiverged, _resume, end_epoch

BLANK = 10  # CTC blank; classes 0-9 are the digits
NUM_CLASSES = 11
SPLITS = {"train": (10, 50), "val": (5, 10), "test": (0, 5)}
MIN_DIGITS, MAX_DIGITS = 2, 7
N_FFT, HOP = 256, 128  # as the single-digit FSDD features: 129 bins, 62.5 frames per second


@dataclass
class Utterances:
    """A batch-ready set of utterances: features [N, 129, T_max] (log-spectrogram, zero past each
    length), lengths [N] (frames), targets [sum of target_lengths] (digits, concatenated, as
    torch.nn.functional.ctc_loss takes them), target_lengths [N], and the recordings used
    (recordings[i]: their positions in data.fsdd_recordings' order)."""
    features: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    recordings: List[List[int]]

    def __len__(self):
        return len(self.lengths)

    def labels(self, i: int) -> List[int]:
        start = int(self.target_lengths[:i].sum())
        return self.targets[start:start + int(self.target_lengths[i])].tolist()

    def subset(self, idx) -> "Utterances":
        """The utterances at positions idx, features cropped to their longest."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        lengths = self.lengths[idx]
        starts = torch.cumsum(self.target_lengths, 0) - self.target_lengths
        targets = torch.cat([self.targets[int(starts[i]):int(starts[i] + self.target_lengths[i])] for i in idx])
        return Utterances(self.features[idx, :, :int(lengths.max())], lengths, targets,
                          self.target_lengths[idx], [self.recordings[int(i)] for i in idx])


def log_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """[samples] -> [129, frames]: log(1 + |STFT|), Hann 256, hop 128 (the FSDD features)."""
    spec = torch.stft(audio, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    return spec.abs().log1p()


def connected_digits(split: str, count: int, seed: int = 0, root=None) -> Utterances:
    """``count`` utterances of the split, a pure function of (split, count, seed): each of
    2-7 digits, recordings drawn uniformly from the split's recordings, silences of 50-250 ms
    between words and 100-300 ms at each end, sample rate 8 kHz."""
    if split not in SPLITS:
        raise ValueError(f"connected_digits: expected split one of {', '.join(SPLITS)}, got {split!r}")
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"connected_digits: expected count an int >= 1, got {count!r}")
    rec = data.fsdd_recordings(root)
    lo, hi = SPLITS[split]
    pool = np.flatnonzero((rec["index"] >= lo) & (rec["index"] < hi))
    rng = np.random.default_rng([seed, lo, hi])
    sr = data.FSDD_SAMPLE_RATE
    specs, targets, chosen = [], [], []
    for _ in range(count):
        words = rng.choice(pool, size=int(rng.integers(MIN_DIGITS, MAX_DIGITS + 1)))
        gaps = [rng.integers(sr // 10, 3 * sr // 10)] + \
               [rng.integers(sr // 20, sr // 4) for _ in words[1:]] + [rng.integers(sr // 10, 3 * sr // 10)]
        parts = [np.zeros(gaps[0], np.float32)]
        for w, gap in zip(words, gaps[1:]):
            parts += [rec["audio"][rec["offsets"][w]:rec["offsets"][w + 1]], np.zeros(gap, np.float32)]
        specs.append(log_spectrogram(torch.from_numpy(np.concatenate(parts))))
        targets.append(torch.from_numpy(rec["digit"][words]))
        chosen.append(words.tolist())
    lengths = torch.tensor([s.shape[1] for s in specs])
    features = torch.zeros(count, specs[0].shape[0], int(lengths.max()))
    for i, s in enumerate(specs):
        features[i, :, :s.shape[1]] = s
    return Utterances(features, lengths, torch.cat(targets), torch.tensor([len(t) for t in targets]), chosen)


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> List[List[int]]:
    """Best-path CTC decoding: log_probs [B, T, C] (or logits), lengths [B] -> per utterance the
    argmax path with repeats merged and blanks dropped."""
    best = log_probs.argmax(-1)
    out = []
    for path, n in zip(best.tolist(), lengths.tolist()):
        seq, prev = [], BLANK
        for c in path[:n]:
            if c != prev and c != BLANK:
                seq.append(c)
            prev = c
        out.append(seq)
    return out


def edit_distance(a: List[int], b: List[int]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def error_rates(hypotheses: List[List[int]], references: List[List[int]]) -> dict:
    """{"digit_error_rate": edits / reference digits, "sequence_accuracy": exact fraction}."""
    if len(hypotheses) != len(references):
        raise ValueError(f"error_rates: {len(hypotheses)} hypotheses for {len(references)} references")
    edits = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    digits = sum(len(r) for r in references)
    exact = sum(h == r for h, r in zip(hypotheses, references))
    return {"digit_error_rate": edits / max(digits, 1), "sequence_accuracy": exact / max(len(references), 1)}


def length_batches(utts: Utterances, batch: int, generator=None):
    """Utterances in batches of similar length (sorted, so little padding); with a generator the
    batches come in a random order, else shortest first."""
    order = torch.argsort(utts.lengths, stable=True)
    chunks = list(order.split(batch))
    if generator is not None:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator)]
    for idx in chunks:
        yield utts.subset(idx)


def ctc_loss(logits: torch.Tensor, output_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor) -> torch.Tensor:
    """Mean CTC loss (blank = BLANK) of logits [B, T, NUM_CLASSES] with output_lengths [B] frames
    against targets [sum target_lengths] (concatenated) and target_lengths [B]; shapes are checked
    first, with a message naming what was expected and what was given."""
    if logits.dim() != 3 or logits.shape[-1] != NUM_CLASSES:
        raise ValueError(f"ctc_loss: expected logits [B, T, {NUM_CLASSES}], got {list(logits.shape)}")
    B, T = logits.shape[:2]
    if list(output_lengths.shape) != [B] or list(target_lengths.shape) != [B]:
        raise ValueError(f"ctc_loss: expected output_lengths and target_lengths [{B}], got "
                         f"{list(output_lengths.shape)} and {list(target_lengths.shape)}")
    if targets.dim() != 1 or targets.numel() != int(target_lengths.sum()):
        raise ValueError(f"ctc_loss: expected targets [{int(target_lengths.sum())}] (concatenated), got "
                         f"{list(targets.shape)}")
    if int(output_lengths.max()) > T or int(output_lengths.min()) < 1:
        raise ValueError(f"ctc_loss: expected output_lengths in 1..{T}, got {int(output_lengths.min())}.."
                         f"{int(output_lengths.max())}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= BLANK):
        raise ValueError(f"ctc_loss: expected targets in 0..{BLANK - 1} (the blank is {BLANK}), got "
                         f"{int(targets.min())}..{int(targets.max())}")
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)  # [T, B, C], as F.ctc_loss takes it
    return torch.nn.functional.ctc_loss(log_probs, targets, output_lengths, target_lengths, blank=BLANK,
                                        zero_infinity=True)


def transcribe(model: torch.nn.Module, utts: Utterances, batch: int = 64) -> List[List[int]]:
    """Greedy CTC transcripts of every utterance (model in eval mode, in the utterances' order);
    the model maps [B, 129, T] to logits [B, T', NUM_CLASSES] and has output_lengths(lengths)."""
    model.eval()
    hyps = [None] * len(utts)
    order = torch.argsort(utts.lengths, stable=True)
    with torch.no_grad():
        for idx in order.split(batch):
            part = utts.subset(idx)
            out = greedy_decode(model(part.features), model.output_lengths(part.lengths))
            for i, h in zip(idx.tolist(), out):
                hyps[i] = h
    return hyps


def evaluate(model: torch.nn.Module, utts: Utterances, batch: int = 64) -> dict:
    """error_rates of the model's greedy transcripts against the utterances' digits."""
    return error_rates(transcribe(model, utts, batch), [utts.labels(i) for i in range(len(utts))])


def train_ctc(model: torch.nn.Module, utterances_for_epoch, *, epochs: int, lr: float = 2e-3,
              batch: int = 32, params=None, clip: float = 5.0, seed: int = 0, checkpoint=None,
              on_epoch=None, show_progress: bool = False, desc: str = "train (CTC)") -> list:
    """Adam with a cosine schedule over ``epochs``, CTC loss, gradients clipped to norm ``clip``
    (recurrent layers); returns the mean loss per epoch.

    utterances_for_epoch(epoch) -> Utterances: the epoch's training data (fresh utterances each
    epoch, or the same every time). params: what to train (default all of the model's).
    checkpoint, on_epoch(epoch, mean_loss): as gwkcuda.train.train (a killed run resumes after
    its last finished epoch and ends as an uninterrupted one). Raises TrainingDiverged at the
    first non-finite loss, before its step."""
    params = list(model.parameters() if params is None else params)
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
    losses, start = [], 0
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    if checkpoint is not None and checkpoint.exists():
        losses, start = _resume(checkpoint, "cpu", epochs, model, opt, sched)
    for epoch in progress(range(start, epochs), show_progress, desc=desc, unit="epoch", initial=start, total=epochs):
        model.train()
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        total, count = 0.0, 0
        utts = utterances_for_epoch(epoch)
        for part in length_batches(utts, batch, gen):
            loss = ctc_loss(model(part.features), model.output_lengths(part.lengths), part.targets,
                            part.target_lengths)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingDiverged(f"{desc} diverged: loss {value} at epoch {epoch + 1}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            total += value * len(part)
            count += len(part)
        end_epoch(epoch, epochs, total / max(1, count), losses, model, opt, sched, on_epoch, checkpoint)
    return losses
