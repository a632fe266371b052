"""Task heads (modeling_pixel_m4) and their data / metrics helpers (processing_pixel_m4,
parsing_pixel_m4, tools/task_*.py)."""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from pixel_m4 import (
    PixelM4Config,
    PixelM4ForBiaffineParsing,
    PixelM4ForSequenceClassification,
    PixelM4ForTokenClassification,
)
from pixel_m4.modeling_pixel_m4 import word_vectors
from pixel_m4.parsing_pixel_m4 import chu_liu_edmonds, decode_trees, mst_tree
from pixel_m4.processing_pixel_m4 import pad_to_patches, token_patch_spans
from pixel_m4.tools.task_cli import parse_with_recipe
from pixel_m4.tools.task_data import (
    SequenceClassificationCollator,
    WordTaskCollator,
    encode_labels,
    read_conll,
    read_conllu,
    truncation_report,
)
from pixel_m4.tools.task_metrics import attachment_scores, classification_metrics, ner_metrics

PATCHES = 36  # a 6 x 6 grid keeps the test models fast
RENDERER = {"max_seq_length": PATCHES}  # conftest's renderer
ROOT_DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------

CONLLU = """# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\t_\t_\t4\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\t_\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\t_\t_\t4\tadvmod\t_\t_
4\tknow\tknow\tVERB\t_\t_\t0\troot\t_\t_
4.1\tknows\tknow\tVERB\t_\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t_\t_\t4\tpunct\t_\t_

1\tYes\tyes\tINTJ\t_\t_\t0\troot\t_\t_
"""


def test_read_conllu_skips_multiword_ranges_and_empty_nodes(tmp_path):
    path = tmp_path / "sample.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    first, second = read_conllu(path)
    assert first["tokens"] == ["I", "do", "n't", "know", "."]
    assert first["heads"] == [4, 4, 4, 0, 4]
    assert first["deprels"] == ["nsubj", "aux", "advmod", "root", "punct"]
    assert second == {"tokens": ["Yes"], "heads": [0], "deprels": ["root"]}


@pytest.mark.parametrize(
    "lines, message",
    [
        (["1\ta\ta\tX\t_\t_\t0\troot\t_\t_", "3\tb\tb\tX\t_\t_\t1\tdep\t_\t_"], "IDs must run"),
        (["1\ta\ta\tX\t_\t_\t0\troot\t_\t_", "2\tb\tb\tX\t_\t_\t7\tdep\t_\t_"], "HEAD 7"),
        (["1\ta\ta\tX\t_\t_\t0\troot\t_\t_", "2\tb\tb\tX\t_\t_\t0\troot\t_\t_"], "one root"),
        (["1\ta\ta\tX\t_\t_\t0\troot"], "10 tab-separated columns"),
        (["1\ta\ta\tX\t_\t_\tx\troot\t_\t_"], "must be integers"),
    ],
)
def test_read_conllu_rejects_malformed_sentences(tmp_path, lines, message):
    path = tmp_path / "bad.conllu"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        read_conllu(path)
    assert "bad.conllu:" in str(error.value)  # names the file and line


def test_read_conll(tmp_path):
    path = tmp_path / "ner.conll"
    path.write_text("-DOCSTART-\tO\n\nMaria\tB-PER\nruns\tO\n\n\nOslo B-LOC\n", encoding="utf-8")
    assert read_conll(path) == [
        {"tokens": ["Maria", "runs"], "tags": ["B-PER", "O"]},
        {"tokens": ["Oslo"], "tags": ["B-LOC"]},
    ]
    path.write_text("Maria\tB-PER\nruns\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"ner.conll:2: .*no tag column"):
        read_conll(path)


def test_encode_labels_names_unknown_labels():
    label2id = {"O": 0, "B-PER": 1}
    assert encode_labels([["O", "B-PER"], ["O"]], label2id, "train") == [[0, 1], [0]]
    with pytest.raises(ValueError, match=r"unknown label 'B-XYZ' in validation \(example 1\)"):
        encode_labels([["O"], ["B-XYZ"]], label2id, "validation")


# ---------------------------------------------------------------------------------------------
# Word alignment and collators
# ---------------------------------------------------------------------------------------------


def test_token_spans_follow_rendered_words_across_patches(renderer):
    tokens = ["Internationalisation", "is", "long"]
    rendered = renderer.render(" ".join(tokens)).word_patch_spans
    spans = token_patch_spans(tokens, rendered)
    assert spans == rendered
    assert spans[0][1] - spans[0][0] == 10  # 20 characters = 10 bigram patches
    assert [end - start for start, end in spans[1:]] == [1, 2]


def test_token_with_spaces_spans_all_its_rendered_words(renderer):
    tokens = ["New York", "is", "big"]  # one token, two rendered words
    rendered = renderer.render(" ".join(tokens)).word_patch_spans
    assert len(rendered) == 4
    assert token_patch_spans(tokens, rendered) == [
        (rendered[0][0], rendered[1][1]),
        rendered[2],
        rendered[3],
    ]


def test_chinese_tokens_as_given_by_the_data(renderer):
    # segmented tokens: a two-character word is one bigram pair, two CJK glyphs -> 2 patches
    segmented = ["北京", "是", "首都"]
    spans = token_patch_spans(segmented, renderer.render(" ".join(segmented)).word_patch_spans)
    assert [end - start for start, end in spans] == [2, 1, 2]
    # one token per character: each character its own word
    characters = list("北京是首都")
    spans = token_patch_spans(characters, renderer.render(" ".join(characters)).word_patch_spans)
    assert len(spans) == 5
    assert all(end - start == 1 for start, end in spans)
    assert [start for start, _ in spans] == sorted({start for start, _ in spans})


def test_truncated_tokens_get_empty_spans_and_are_reported(renderer):
    tokens = ["word"] * 40  # 2 patches each: far more than 36 patches
    rendered = renderer.render(" ".join(tokens))
    spans = token_patch_spans(tokens, rendered.word_patch_spans)
    kept = len(rendered.word_patch_spans)
    assert 0 < kept < 40
    assert spans[kept:] == [(0, 0)] * (40 - kept)
    assert rendered.overflow == 40 - kept
    report = truncation_report(renderer, _dataset({"tokens": [tokens, ["short"]]}))
    assert report == {"truncated_examples": 1, "truncated_words": 40 - kept}


def test_token_without_visible_characters_is_an_error(renderer):
    with pytest.raises(ValueError, match=r"token 1 \(' '\) has nothing to render"):
        token_patch_spans(["a", " ", "b"], renderer.render("a b").word_patch_spans)


def test_word_collator_pads_aligns_and_ignores_truncated_words(renderer):
    long_tokens = ["word"] * 40
    features = [
        {"tokens": ["Maria", "lives", "in", "Oslo"], "labels": [1, 0, 0, 2]},
        {"tokens": long_tokens, "labels": [0] * 40},
    ]
    batch = WordTaskCollator(renderer, num_patches=49, padding="max_length")(features)
    assert batch["pixel_values"].shape == (2, 1, 16, 16 * 49)  # the compact format
    assert batch["attention_mask"].shape == (2, 49)
    assert batch["attention_mask"][:, PATCHES:].sum() == 0  # padding to the model's width
    assert batch["word_spans"].shape == (2, 40, 2)
    assert batch["labels"][0].tolist() == [1, 0, 0, 2] + [-100] * 36
    kept = len(renderer.render(" ".join(long_tokens)).word_patch_spans)
    assert batch["labels"][1, :kept].tolist() == [0] * kept
    assert (batch["labels"][1, kept:] == -100).all()
    assert (batch["word_spans"][1, kept:] == 0).all()


def test_word_collator_drops_arcs_to_truncated_heads(renderer):
    tokens = ["word"] * 40
    kept = len(renderer.render(" ".join(tokens)).word_patch_spans)
    heads = [0] + [1] * 38 + [kept + 1]  # the last word heads one lost to truncation
    heads[1] = 40  # word 2 points at the last (truncated) word
    collate = WordTaskCollator(
        renderer, PATCHES, label_fields=("arc_labels", "rel_labels"), head_fields=("arc_labels",)
    )
    batch = collate([{"tokens": tokens, "arc_labels": heads, "rel_labels": [3] * 40}])
    arcs, rels = batch["arc_labels"][0], batch["rel_labels"][0]
    assert arcs[0] == 0 and arcs[2] == 1
    assert arcs[1] == -100 and rels[1] == -100  # its head has no patches
    assert (arcs[kept:] == -100).all() and (rels[kept:] == -100).all()


def test_word_collator_rejects_mismatched_labels_bad_heads_and_empty_sentences(renderer):
    with pytest.raises(ValueError, match="3 tokens but 2 labels"):
        WordTaskCollator(renderer, PATCHES)([{"tokens": ["a", "b", "c"], "labels": [0, 1]}])
    parser_collate = WordTaskCollator(
        renderer, PATCHES, label_fields=("arc_labels", "rel_labels"), head_fields=("arc_labels",)
    )
    with pytest.raises(ValueError, match="3 tokens but 2 arc_labels"):
        parser_collate([{"tokens": ["a", "b", "c"], "arc_labels": [0, 1], "rel_labels": [0] * 3}])
    with pytest.raises(ValueError, match=r"arc_labels must be heads in 0..2 .* got \[0, 5\]"):
        parser_collate([{"tokens": ["a", "b"], "arc_labels": [0, 5], "rel_labels": [0, 0]}])
    with pytest.raises(ValueError, match="an example has no tokens"):
        WordTaskCollator(renderer, PATCHES)([{"tokens": [], "labels": []}])


def test_pad_to_patches_rejects_a_renderer_longer_than_the_model(renderer):
    batch = renderer(["a b"], return_tensors="pt")
    padded = pad_to_patches(batch, 49)
    assert (padded["pixel_values"][..., 16 * PATCHES :] == 1.0).all()
    with pytest.raises(ValueError, match="renderer makes 36 patches but the model reads only 25"):
        pad_to_patches(batch, 25)
    with pytest.raises(ValueError, match=r"--max_seq_length \(36 patches\) exceeds the model's 25"):
        WordTaskCollator(renderer, 25)


def test_sequence_collator_renders_pairs(renderer):
    features = [
        {"text": "a cat", "text_pair": "a dog", "labels": 1},
        {"text": "नदी में बाढ़", "text_pair": "新疫苗", "labels": 0},
    ]
    batch = SequenceClassificationCollator(renderer, PATCHES)(features)
    assert batch["labels"].tolist() == [1, 0]
    # the renderer's own pair layout: text, black separator patch, text_pair, black end patch
    pairs = renderer(
        [f["text"] for f in features], text_pair=[f["text_pair"] for f in features],
        return_tensors="pt", padding="longest", output_format="uint8",
    )  # fmt: skip
    assert torch.equal(batch["pixel_values"], pairs["pixel_values"])
    assert torch.equal(batch["attention_mask"], pairs["attention_mask"])
    for row, feature in enumerate(features):
        text_alone = int(renderer(feature["text"])["num_patches"][0])  # its end patch is last
        pair_alone = int(renderer(feature["text_pair"])["num_patches"][0])
        assert int(batch["attention_mask"][row].sum()) == text_alone + pair_alone
        patches = batch["pixel_values"][row, 0].unflatten(-1, (-1, 16)).transpose(0, 1)
        black = [index for index, patch in enumerate(patches) if (patch == 0).all()]
        # separator where the text alone would end, then the end patch
        assert black == [text_alone - 1, text_alone + pair_alone - 1]


# ---------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------


def random_inputs(batch: int = 2):
    pixel_values = torch.rand(batch, 3, 16, 16 * PATCHES)
    attention_mask = torch.zeros(batch, PATCHES, dtype=torch.long)
    attention_mask[:, :10] = 1
    word_spans = torch.tensor([[[0, 2], [2, 5], [5, 6]], [[0, 3], [3, 4], [0, 0]]])[:batch]
    return pixel_values, attention_mask, word_spans


def test_word_vectors_first_and_mean():
    hidden = torch.arange(1 + 6, dtype=torch.float)[None, :, None].repeat(1, 1, 2)  # CLS=0
    spans = torch.tensor([[[0, 2], [2, 5], [0, 0]]])
    first = word_vectors(hidden, spans, "first")
    mean = word_vectors(hidden, spans, "mean")
    assert first[0, :, 0].tolist() == [1.0, 3.0, 0.0]  # patch k is hidden index k + 1
    assert mean[0, :, 0].tolist() == [1.5, 4.0, 0.0]


def test_sequence_classification_shapes_and_losses(small_config):
    pixel_values, attention_mask, _ = random_inputs()
    model = PixelM4ForSequenceClassification(small_config(num_labels=3))
    output = model(pixel_values, attention_mask, labels=torch.tensor([0, 2]))
    assert output.logits.shape == (2, 3)
    expected = torch.nn.functional.cross_entropy(output.logits, torch.tensor([0, 2]))
    assert torch.allclose(output.loss, expected)
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 3\)"):
        model(pixel_values, attention_mask, labels=torch.tensor([0, 3]))

    multi = PixelM4ForSequenceClassification(
        small_config(num_labels=3, problem_type="multi_label_classification")
    )
    hot = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    output = multi(pixel_values, attention_mask, labels=hot)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, hot)
    assert torch.allclose(output.loss, expected)

    regression = PixelM4ForSequenceClassification(small_config(num_labels=1))
    output = regression(pixel_values, attention_mask, labels=torch.tensor([0.5, -1.0]))
    assert torch.allclose(
        output.loss, ((output.logits[:, 0] - torch.tensor([0.5, -1.0])) ** 2).mean()
    )


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_sequence_classification_pooling_ignores_padding(small_config, mode):
    pixel_values, attention_mask, _ = random_inputs()
    model = PixelM4ForSequenceClassification(small_config(num_labels=2, pooling_mode=mode)).eval()
    changed = pixel_values.clone()
    changed[..., 16 * 20 :] = 0.3  # patches outside the attention mask
    assert torch.allclose(
        model(pixel_values, attention_mask).logits, model(changed, attention_mask).logits, atol=1e-5
    )


def test_token_classification_loss_skips_words_without_patches(small_config):
    pixel_values, attention_mask, word_spans = random_inputs()
    model = PixelM4ForTokenClassification(small_config(num_labels=4))
    labels = torch.tensor([[1, 2, 3], [0, 1, 2]])  # word 3 of example 2 has no patches
    output = model(pixel_values, word_spans, attention_mask, labels=labels)
    assert output.logits.shape == (2, 3, 4)
    scored = labels.clone()
    scored[1, 2] = -100
    expected = torch.nn.functional.cross_entropy(
        output.logits.flatten(0, 1), scored.flatten(), ignore_index=-100
    )
    assert torch.allclose(output.loss, expected)
    with pytest.raises(ValueError, match=r"labels must be class ids in \[0, 4\)"):
        model(pixel_values, word_spans, attention_mask, labels=torch.tensor([[1, 2, 9], [0, 1, 2]]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\)"):
        model(pixel_values, word_spans, attention_mask, labels=labels[:, :2])


@pytest.mark.parametrize(
    "spans, message",
    [
        (torch.zeros(2, 3), "shape \\(batch, num_words, 2\\)"),
        (torch.zeros(3, 1, 2, dtype=torch.long), "shape \\(2, num_words, 2\\)"),
        (torch.tensor([[[0, 37]], [[0, 1]]]), "end <= num_patches \\(36\\)"),
        (torch.tensor([[[3, 1]], [[0, 1]]]), "start <= end"),
    ],
)
def test_word_heads_reject_bad_word_spans(small_config, spans, message):
    pixel_values, attention_mask, _ = random_inputs()
    model = PixelM4ForTokenClassification(small_config(num_labels=2))
    with pytest.raises(ValueError, match=message):
        model(pixel_values, spans, attention_mask)


def parameter_shapes(model, prefix="") -> dict[str, tuple]:
    """Head parameters (outside the encoder blocks) by name -> shape."""
    return {
        name: tuple(parameter.shape)
        for name, parameter in model.named_parameters()
        if not name.startswith(("vit.layers.", "vit.embeddings.", "vit.layernorm."))
        and name.startswith(prefix)
    }


def test_sequence_classification_heads_carry_the_published_parameters(small_config):
    hidden = small_config().hidden_size
    # mean (and max) pooling: pixel/models/pooling.py PoolingForSequenceClassificationHead
    mean = PixelM4ForSequenceClassification(small_config(num_labels=3))
    assert parameter_shapes(mean) == {
        "pooler.linear.weight": (hidden, hidden),
        "pooler.linear.bias": (hidden,),
        "pooler.ln.weight": (hidden,),
        "pooler.ln.bias": (hidden,),
        "classifier.weight": (3, hidden),
        "classifier.bias": (3,),
    }
    assert mean.pooler.ln.eps == 1e-12 and isinstance(mean.pooler.activation, torch.nn.GELU)
    assert mean.pooler.dropout.p == 0.0  # small_config's classifier_dropout
    assert (
        PixelM4ForSequenceClassification(PixelM4Config.from_preset("test")).pooler.dropout.p == 0.1
    )
    # cls pooling: the ViT pooler (dense + tanh) of the published model, nothing else
    cls = PixelM4ForSequenceClassification(small_config(num_labels=3, pooling_mode="cls"))
    assert parameter_shapes(cls) == {
        "vit.pooler.dense.weight": (hidden, hidden),
        "vit.pooler.dense.bias": (hidden,),
        "classifier.weight": (3, hidden),
        "classifier.bias": (3,),
    }


def test_sequence_classification_computes_the_published_head(small_config):
    pixel_values, attention_mask, _ = random_inputs()
    for mode in ("mean", "max", "cls"):
        model = PixelM4ForSequenceClassification(
            small_config(num_labels=3, pooling_mode=mode)
        ).eval()
        hidden = model.vit(pixel_values, attention_mask).last_hidden_state
        if mode == "cls":
            pooled = torch.tanh(model.vit.pooler.dense(hidden[:, 0]))
        else:
            head = model.pooler
            patches = head.ln(torch.nn.functional.gelu(head.linear(hidden[:, 1:])))
            inside = attention_mask[..., None].bool()
            if mode == "mean":
                pooled = (patches * inside).sum(1) / inside.sum(1)
            else:
                pooled = patches.masked_fill(~inside, -1e9).amax(1)
        expected = model.classifier(pooled)
        torch.testing.assert_close(model(pixel_values, attention_mask).logits, expected)


def test_published_parser_structure_scores_and_loss(small_config):
    pixel_values, attention_mask, word_spans = random_inputs()
    hidden = small_config().hidden_size
    model = PixelM4ForBiaffineParsing(small_config(num_labels=5)).eval()
    # pixel/models/pixel/modeling_pixel.py PIXELForBiaffineParsing: Biaffine(H, bias_x, not
    # bias_y) for arcs, Biaffine(H, R, bias_x, bias_y) for relations, the ViT pooler for ROOT
    assert parameter_shapes(model) == {
        "vit.pooler.dense.weight": (hidden, hidden),
        "vit.pooler.dense.bias": (hidden,),
        "biaffine_arcs.weight": (1, hidden + 1, hidden),
        "biaffine_rels.weight": (5, hidden + 1, hidden + 1),
    }
    torch.nn.init.normal_(model.biaffine_arcs.weight)  # zero-initialised: give scores spread
    torch.nn.init.normal_(model.biaffine_rels.weight)
    arcs = torch.tensor([[2, 0, 2], [0, 1, 3]])  # word 3 of example 2 has no patches
    rels = torch.tensor([[1, 0, 4], [0, 3, 2]])
    output = model(pixel_values, word_spans, attention_mask, arc_labels=arcs, rel_labels=rels)
    assert output.word_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert torch.isfinite(output.arc_logits).all()  # every candidate scored, none masked

    encoded = model.vit(pixel_values, attention_mask).last_hidden_state
    words = word_vectors(encoded, word_spans, "mean")
    root = torch.tanh(model.vit.pooler.dense(encoded[:, 0]))
    nodes = torch.cat([root[:, None], words], 1)
    with_bias = torch.cat([words, torch.ones(2, 3, 1)], -1)
    expected = torch.einsum("bnx,xy,bmy->bnm", with_bias, model.biaffine_arcs.weight[0], nodes)
    torch.testing.assert_close(output.arc_logits, expected)

    # the truncated word is scored too (from a zero vector); arc mean + relation mean
    arc_loss = torch.nn.functional.cross_entropy(output.arc_logits.flatten(0, 1), arcs.flatten())
    at_gold = output.rel_logits.flatten(0, 1)[torch.arange(6), arcs.flatten()]
    rel_loss = torch.nn.functional.cross_entropy(at_gold, rels.flatten())
    torch.testing.assert_close(output.loss, arc_loss + rel_loss)


def test_dozat_manning_parser_masks_impossible_heads_and_scores_gold_arcs(small_config):
    pixel_values, attention_mask, word_spans = random_inputs()
    model = PixelM4ForBiaffineParsing(
        small_config(
            num_labels=5, parser_variant="dozat_manning", biaffine_arc_size=8, biaffine_rel_size=4
        )
    )
    assert parameter_shapes(model, "biaffine") == {
        "biaffine_arcs.weight": (1, 9, 8),
        "biaffine_rels.weight": (5, 5, 5),
    }
    assert model.vit.pooler is None and model.arc_dependent[0].out_features == 8
    arcs = torch.tensor([[2, 0, 2], [0, 1, -100]])
    rels = torch.tensor([[1, 0, 4], [0, 3, -100]])
    output = model(pixel_values, word_spans, attention_mask, arc_labels=arcs, rel_labels=rels)
    assert output.arc_logits.shape == (2, 3, 4)
    assert output.rel_logits.shape == (2, 3, 4, 5)
    assert output.word_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    low = torch.finfo(output.arc_logits.dtype).min
    for word in range(3):  # no word heads itself
        assert (output.arc_logits[:, word, word + 1] == low).all()
    assert (output.arc_logits[1, :, 3] == low).all()  # word 3 of example 2 has no patches

    # the loss is cross entropy over heads + relations at the gold head, per scored word
    arc_loss = torch.nn.functional.cross_entropy(
        output.arc_logits[arcs != -100], arcs[arcs != -100], reduction="sum"
    )
    at_gold = output.rel_logits[arcs != -100][torch.arange(5), arcs[arcs != -100]]
    rel_loss = torch.nn.functional.cross_entropy(at_gold, rels[arcs != -100], reduction="sum")
    assert torch.allclose(output.loss, (arc_loss + rel_loss) / 5)

    with pytest.raises(ValueError, match=r"arc_labels must be class ids in \[0, 4\)"):
        model(pixel_values, word_spans, arc_labels=arcs + 4, rel_labels=rels)
    with pytest.raises(ValueError, match="give both arc_labels and rel_labels"):
        model(pixel_values, word_spans, arc_labels=arcs)


# ---------------------------------------------------------------------------------------------
# Tree decoding and metrics
# ---------------------------------------------------------------------------------------------


def is_tree(heads) -> bool:
    """heads[0] = -1 (ROOT); every word reaches ROOT and exactly one word attaches to it."""
    heads = list(heads)
    for word in range(1, len(heads)):
        seen, node = set(), word
        while node != 0:
            if node in seen:
                return False
            seen.add(node)
            node = heads[node]
    return heads[1:].count(0) == 1


def best_tree_by_enumeration(scores: np.ndarray) -> float:
    n = len(scores) - 1
    best = -np.inf
    for candidate in itertools.product(range(n + 1), repeat=n):
        heads = [-1, *candidate]
        if is_tree(heads):
            best = max(best, sum(scores[word, heads[word]] for word in range(1, n + 1)))
    return best


def test_mst_finds_the_best_single_root_tree():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = 1 + trial % 5
        scores = rng.normal(size=(n + 1, n + 1))
        if trial % 3 == 0:
            scores[1:, 0] += 3.0  # tempt several words to attach to ROOT
        heads = mst_tree(scores)
        assert is_tree(heads), heads
        total = sum(scores[word, heads[word]] for word in range(1, n + 1))
        assert np.isclose(total, best_tree_by_enumeration(scores))


def test_chu_liu_edmonds_breaks_a_greedy_cycle():
    scores = np.full((4, 4), -10.0)  # [dependent, head]
    scores[1, 2], scores[2, 1] = 5.0, 5.0  # greedy: 1 <-> 2 cycle
    scores[1, 0], scores[2, 0], scores[3, 1] = 1.0, 0.0, 2.0
    assert chu_liu_edmonds(scores).tolist() == [-1, 0, 1, 1]


def test_greedy_decoding_takes_each_words_best_head():
    arc_logits = torch.randn(2, 4, 5)
    rel_logits = torch.randn(2, 4, 5, 3)
    word_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    decoded = decode_trees(arc_logits, rel_logits, word_mask)  # greedy is the default
    assert torch.equal(decoded[..., 0], arc_logits.argmax(-1))  # every word, as published
    heads = arc_logits.argmax(-1)
    assert torch.equal(decoded[..., 1], rel_logits.argmax(-1).gather(2, heads[..., None])[..., 0])
    with pytest.raises(ValueError, match="decoding must be 'greedy' or 'mst'"):
        decode_trees(arc_logits, rel_logits, word_mask, "beam")


def test_mst_decoding_only_uses_rendered_words():
    arc_logits = torch.randn(2, 4, 5)
    rel_logits = torch.randn(2, 4, 5, 3)
    word_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    decoded = decode_trees(arc_logits, rel_logits, word_mask, "mst")
    assert decoded.shape == (2, 4, 2)
    assert (decoded[1, 2:] == -100).all()
    assert set(decoded[1, :2, 0].tolist()) <= {0, 1, 2}
    for row, n in ((0, 4), (1, 2)):
        heads = decoded[row, :n, 0].tolist()
        assert is_tree([-1, *heads])
        for word, head in enumerate(heads):
            assert decoded[row, word, 1] == rel_logits[row, word, head].argmax()


def test_attachment_scores_on_hand_made_trees():
    gold_heads = [[2, 0, 2, -100], [0, 1, 1, 1]]
    gold_rels = [[1, 0, 2, -100], [0, 1, 1, 2]]
    pred_heads = [[2, 0, 1, 3], [0, 1, 1, 2]]  # 2 of 3 and 3 of 4 heads right
    pred_rels = [[1, 0, 2, 0], [0, 2, 1, 2]]  # of those, one relation wrong
    scores = attachment_scores(pred_heads, pred_rels, gold_heads, gold_rels)
    assert scores["uas"] == pytest.approx(100 * 5 / 7)
    assert scores["las"] == pytest.approx(100 * 4 / 7)


def test_classification_and_ner_metrics():
    class Prediction:
        def __init__(self, predictions, label_ids):
            self.predictions, self.label_ids = predictions, label_ids

    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.0]])
    metrics = classification_metrics(Prediction(logits, np.array([0, 1, 1, 1])))
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)

    id2label = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}
    gold = np.array([[1, 2, 0, 3], [3, 0, -100, -100]])
    predicted = np.array([1, 2, 0, 0, 3, 0, 1, 1])  # PER right, LOC missed, LOC right
    logits = np.eye(4)[predicted].reshape(2, 4, 4)
    metrics = ner_metrics(id2label)(Prediction(logits, gold))
    assert metrics["precision"] == 1.0
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(0.8)


def test_recipes_set_defaults_and_explicit_flags_win(capsys, tmp_path):
    from dataclasses import dataclass

    from transformers import TrainingArguments

    @dataclass
    class Arguments:
        recipe: str = "sample"  # the recipes' names come from parse_with_recipe, not from here
        max_seq_length: int = 0

    recipes = {
        "sample": dict(max_seq_length=64, max_steps=10, report_to="none"),
        "paper": dict(max_seq_length=196, max_steps=15_000, learning_rate=5e-5, report_to="none"),
    }
    args, training = parse_with_recipe((Arguments, TrainingArguments), recipes, args=[])
    assert (args.recipe, args.max_seq_length, training.max_steps) == ("sample", 64, 10)
    args, training = parse_with_recipe(
        (Arguments, TrainingArguments), recipes, args=["--recipe", "paper", "--max_steps", "7"]
    )
    assert (args.max_seq_length, training.max_steps, training.learning_rate) == (196, 7, 5e-5)
    # an unknown recipe is refused, naming the recipes, on the command line and in an args file
    with pytest.raises(SystemExit):
        parse_with_recipe((Arguments, TrainingArguments), recipes, args=["--recipe", "huge"])
    error = capsys.readouterr().err
    assert "--recipe {sample,paper}" in error and "invalid choice: 'huge'" in error
    args_file = tmp_path / "args.json"
    args_file.write_text('{"recipe": "huge", "output_dir": "out"}')
    with pytest.raises(
        ValueError, match=r"recipe must be one of \['sample', 'paper'\], got 'huge'"
    ):
        parse_with_recipe((Arguments, TrainingArguments), recipes, args=[str(args_file)])


def _dataset(columns):
    from datasets import Dataset

    return Dataset.from_dict(columns)


def test_load_splits_reads_local_files_and_dataset_folders(tmp_path):
    from pixel_m4.tools.task_data import load_splits

    sample = ROOT_DATA / "sib200" / "eng_Latn"
    splits = load_splits(None, None, {"train": str(sample / "train.tsv"), "test": None})
    assert list(splits) == ["train"] and splits["train"].num_rows == 210
    assert {"text", "category"} <= set(splits["train"].column_names)

    ud = load_splits(None, None, {"train": str(ROOT_DATA / "ud" / "uk_sample-ud-train.conllu")})
    assert ud["train"].column_names == ["tokens", "heads", "deprels"]

    # a dataset name resolves through datasets.load_dataset (a Hub id, here a local folder)
    folder = tmp_path / "my_ner"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        '{"tokens": ["Maria", "runs"], "tags": ["B-PER", "O"]}\n', encoding="utf-8"
    )
    assert load_splits(str(folder), None, {})["train"][0]["tags"] == ["B-PER", "O"]

    with pytest.raises(FileNotFoundError, match="train file 'missing.tsv' does not exist"):
        load_splits(None, None, {"train": "missing.tsv"})
    with pytest.raises(ValueError, match="same format"):
        load_splits(
            None, None, {"train": str(sample / "train.tsv"), "test": str(folder / "train.jsonl")}
        )


def test_named_labels_turns_class_label_ids_into_names():
    from datasets import ClassLabel, Dataset, Features, List, Value

    from pixel_m4.tools.task_data import named_labels

    tags = ClassLabel(names=["O", "B-PER", "I-PER"])
    features = Features({"tokens": List(Value("string")), "ner_tags": List(tags), "topic": tags})
    data = Dataset.from_dict(
        {"tokens": [["Maria", "Lind"]], "ner_tags": [[1, 2]], "topic": [0]}, features=features
    )
    assert named_labels(data, "ner_tags") == [["B-PER", "I-PER"]]
    assert named_labels(data, "topic") == ["O"]
    assert named_labels(data, "tokens") == [["Maria", "Lind"]]
