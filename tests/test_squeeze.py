import numpy as np
import pytest
import torch
import transformers

from engine.build.squeeze import balanced_assignment, convert_state_dict, squeeze_model


def tiny_bert(head="BertForTokenClassification", seed=0):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        num_labels=2 if head == "BertForQuestionAnswering" else 3,
    )
    return getattr(transformers, head)(config).eval()


def logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.start_logits if hasattr(out, "start_logits") else out.logits


@pytest.mark.parametrize("head", ["BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering"])
def test_groups_one_is_exactly_the_bert(head):
    bert = tiny_bert(head)
    ids = torch.randint(0, 60, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    for permute in (False, True):
        squeezed = squeeze_model(bert, groups=1, permute=permute).eval()
        assert type(squeezed).__name__ == head.replace("Bert", "SqueezeBert")
        assert torch.allclose(logits(bert, ids, mask), logits(squeezed, ids, mask), atol=1e-5)


def test_grouped_model_has_the_paper_grouping_and_fewer_weights():
    bert = tiny_bert()
    squeezed = squeeze_model(bert, groups=4)
    c = squeezed.config
    assert (c.q_groups, c.k_groups, c.v_groups, c.intermediate_groups, c.output_groups) == (4, 4, 4, 4, 4)
    assert c.post_attention_groups == 1
    assert sum(p.numel() for p in squeezed.parameters()) < sum(p.numel() for p in bert.parameters())


def test_balanced_assignment_is_balanced_and_optimal_on_a_clear_case():
    score = np.array([[9, 0], [8, 1], [0, 7], [1, 6]], dtype=float)
    assert balanced_assignment(score).tolist() == [0, 0, 1, 1]
    groups = balanced_assignment(np.random.default_rng(0).random((12, 4)))
    assert np.bincount(groups).tolist() == [3, 3, 3, 3]


def kept_energy(state):
    return sum(float((v**2).sum()) for k, v in state.items() if "conv1d" in k or ".query." in k or ".key." in k or ".value." in k)


def test_permutation_keeps_more_weight_than_a_plain_cut():
    bert = tiny_bert(seed=3)
    sd = bert.state_dict()
    plain = convert_state_dict(sd, bert.config, groups=4, permute=False)
    permuted = convert_state_dict(sd, bert.config, groups=4, permute=True)
    assert kept_energy(permuted) > kept_energy(plain)
