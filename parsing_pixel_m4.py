"""Tree decoding for `PixelM4ForBiaffineParsing`: the parser's scores -> a head and a relation
per word. Shipped in every PIXEL-M4 Hub folder, so a parser loaded with `trust_remote_code=True`
decodes as the training scripts do:

    from pixel_m4.parsing_pixel_m4 import decode_trees
    output = parser(**inputs)
    decoded = decode_trees(output.arc_logits, output.rel_logits, output.word_mask,
                           parser.config.parser_decoding)  # [B, W, 2]: head, relation id

`greedy` is the published evaluation; `mst` gives well-formed trees (Chu-Liu-Edmonds, one root).
From a Hub folder without the pixel_m4 package, load the function as transformers loads the
folder's classes:

    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    decode_trees = get_class_from_dynamic_module("parsing_pixel_m4.decode_trees", folder_or_hub_id)
"""

import numpy as np
import torch

from .processing_pixel_m4 import IGNORE


def _find_cycle(heads: np.ndarray) -> list[int] | None:
    """Nodes of one cycle of the head graph (node 0 = ROOT has no head), or None."""
    state = np.zeros(len(heads), dtype=np.int8)  # 0 unseen, 1 on the current path, 2 done
    state[0] = 2
    for start in range(1, len(heads)):
        path, node = [], start
        while state[node] == 0:
            state[node] = 1
            path.append(node)
            node = heads[node]
        if state[node] == 1:
            return path[path.index(node) :]
        state[path] = 2
    return None


def chu_liu_edmonds(scores: np.ndarray) -> np.ndarray:
    """Maximum spanning arborescence rooted at node 0.

    scores [N, N]: scores[d, h] = score of h as head of d (-inf = forbidden). Returns heads [N]
    (heads[0] = -1). Greedy heads; while they contain a cycle, contract it into one node
    (arcs into it scored relative to the cycle arc they replace), solve, expand.
    """
    scores = np.array(scores, dtype=np.float64)
    scores[0] = -np.inf
    np.fill_diagonal(scores, -np.inf)
    heads = scores.argmax(1)
    heads[0] = -1
    cycle = _find_cycle(heads)
    if cycle is None:
        return heads
    cycle = np.array(cycle)
    outside = np.flatnonzero(~np.isin(np.arange(len(scores)), cycle))  # node 0 first
    size = len(outside)
    # entering the cycle at c from outside head h replaces the cycle arc into c
    gain = scores[np.ix_(cycle, outside)] - scores[cycle, heads[cycle]][:, None]  # [C, size]
    to_outside = scores[np.ix_(outside, cycle)]  # [size, C]: cycle nodes as heads of outside
    contracted = np.full((size + 1, size + 1), -np.inf)
    contracted[:size, :size] = scores[np.ix_(outside, outside)]
    contracted[size, :size] = gain.max(0)
    contracted[:size, size] = to_outside.max(1)
    sub_heads = chu_liu_edmonds(contracted)

    result = heads.copy()
    for index, node in enumerate(outside[1:], 1):
        head = sub_heads[index]
        result[node] = outside[head] if head < size else cycle[to_outside[index].argmax()]
    entry_head = sub_heads[size]
    result[cycle[gain[:, entry_head].argmax()]] = outside[entry_head]
    return result


def mst_tree(scores: np.ndarray) -> np.ndarray:
    """Best tree with exactly one word attached to ROOT (UD trees have one root).

    scores [1+n, 1+n] (dependent, head), node 0 = ROOT. If the unconstrained MST has several
    root children, every word is tried as the only one and the best tree kept.
    """
    scores = np.array(scores, dtype=np.float64)
    heads = chu_liu_edmonds(scores)
    if np.count_nonzero(heads[1:] == 0) == 1:
        return heads
    words = np.arange(1, len(scores))
    best, best_score = heads, -np.inf
    for root in words:
        constrained = scores.copy()
        constrained[1:, 0] = -np.inf
        constrained[root, 0] = scores[root, 0]
        candidate = chu_liu_edmonds(constrained)
        total = scores[words, candidate[1:]].sum()
        if total > best_score:
            best, best_score = candidate, total
    return best


def decode_trees(
    arc_logits: torch.Tensor,
    rel_logits: torch.Tensor,
    word_mask: torch.Tensor,
    decoding: str = "greedy",
) -> torch.Tensor:
    """Parser outputs -> [B, W, 2] (head, relation id) per word; each word's best relation for
    its chosen head.

    `greedy` (the published evaluation, pixel/trainer.py PIXELTrainerForBiaffineParsing): each
    word's highest-scoring head among all candidates, for every word position (padding positions
    too: metrics skip words whose gold head is -100); the result need not be a tree.
    `mst`: per sentence, the maximum spanning tree with one root over the log-probabilities of
    the heads of its rendered words (`word_mask`); other words get -100.
    """
    if decoding not in ("greedy", "mst"):
        raise ValueError(f"decoding must be 'greedy' or 'mst', got {decoding!r}")
    rel_ids = rel_logits.detach().argmax(-1).cpu()  # [B, W, 1+W]
    if decoding == "greedy":
        heads = arc_logits.detach().argmax(-1).cpu()  # [B, W]
        return torch.stack([heads, rel_ids.gather(2, heads[..., None])[..., 0]], -1)
    log_probs = torch.log_softmax(arc_logits.detach().float(), -1).cpu().numpy()
    rel_ids = rel_ids.numpy()
    word_mask = word_mask.bool().cpu().numpy()
    decoded = np.full((*word_mask.shape, 2), IGNORE, dtype=np.int64)
    for row in range(len(word_mask)):
        words = np.flatnonzero(word_mask[row])
        if not len(words):
            continue
        nodes = np.concatenate([[0], words + 1])  # ROOT + the rendered words, as head indices
        scores = np.full((len(nodes), len(nodes)), -np.inf)
        scores[1:] = log_probs[row][np.ix_(words, nodes)]
        heads = nodes[mst_tree(scores)[1:]]
        decoded[row, words, 0] = heads
        decoded[row, words, 1] = rel_ids[row, words, heads]
    return torch.from_numpy(decoded)
