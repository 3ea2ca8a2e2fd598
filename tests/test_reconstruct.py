"""Least-squares fitting of a cut SqueezeBERT's grouped layers to its BERT (engine.build.reconstruct)."""
import torch

from engine.build.reconstruct import conv_names, fit_grouped_convs, ridge_fit
from engine.build.squeeze import squeeze_model
from tests.test_squeeze import logits, tiny_bert


def calibration_batch(seed=1, rows=12, length=20):
    torch.manual_seed(seed)
    ids = torch.randint(0, 60, (rows, length))
    mask = torch.ones_like(ids)
    mask[::3, 15:] = 0  # padding must not count
    types = torch.zeros_like(ids)
    types[:, 8:] = 1  # question/context pairs
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def test_ridge_fit_recovers_a_linear_map():
    torch.manual_seed(0)
    x = torch.randn(200, 6, dtype=torch.float64)
    w, b = torch.randn(3, 6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    fitted_w, fitted_b = ridge_fit(x, x @ w.T + b, ridge=0.0)
    assert torch.allclose(fitted_w, w, atol=1e-8) and torch.allclose(fitted_b, b, atol=1e-8)


def test_uncut_twin_is_the_bert_laid_out_like_the_cut_student():
    bert = tiny_bert("BertForQuestionAnswering", seed=2)
    twin = squeeze_model(bert, groups=4, cut_weights=False).eval()
    student = squeeze_model(bert, groups=4)
    assert twin.config.q_groups == 1 and student.config.q_groups == 4
    batch = calibration_batch()
    assert torch.allclose(logits(bert, batch["input_ids"], batch["attention_mask"]),
                          logits(twin, batch["input_ids"], batch["attention_mask"]), atol=1e-5)
    # the student's blocks are the twin's diagonal blocks: same head and neuron order
    for name in conv_names(student):
        conv, dense = student.get_submodule(name), twin.get_submodule(name)
        g, (o, i) = conv.groups, dense.weight.shape[:2]
        diagonal = [dense.weight[k * o // g : (k + 1) * o // g, k * i // g : (k + 1) * i // g] for k in range(g)]
        assert torch.equal(torch.cat(diagonal), conv.weight), name


def final_hidden_error(student, bert, batch):
    with torch.no_grad():
        s = student(**batch, output_hidden_states=True).hidden_states[-1]
        t = bert(**batch, output_hidden_states=True).hidden_states[-1]
    real = batch["attention_mask"].bool()
    return float(((s - t)[real] ** 2).mean())


def test_fit_brings_every_layer_and_the_output_closer_to_the_bert():
    bert = tiny_bert("BertForQuestionAnswering", seed=2)
    student = squeeze_model(bert, groups=4)
    batch = calibration_batch()
    cut_error = final_hidden_error(student, bert, batch)
    records = fit_grouped_convs(student, squeeze_model(bert, groups=4, cut_weights=False), batch, ridge=1e-4)
    assert [r["conv"] for r in records] == conv_names(student) and len(records) == 2 * 6
    assert all(r["mse_after"] <= r["mse_before"] + 1e-9 for r in records)
    assert final_hidden_error(student, bert, batch) < 0.7 * cut_error
    assert student.config.q_groups == 4  # still the grouped architecture
