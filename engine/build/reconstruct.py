"""Fit a freshly cut SqueezeBERT's grouped convolutions to its BERT by least squares, layer by layer.

A plain cut keeps each dense matrix's block-diagonal part and drops what the other input blocks contributed. Hidden
channels are strongly correlated, so much of that contribution is predictable from the block a group does see:
for every grouped conv, in network order, solve (ridge) least squares from the student's own input to what the
BERT's layer produced from the BERT's input, on a batch of real task inputs. Fitting on the student's inputs lets
each layer correct the drift of the layers before it. The attention output projection is dense and refitted too.
"""
from __future__ import annotations

import torch


class _Reached(Exception):
    """Raised by a forward hook to stop a forward pass once the wanted input has been seen."""


def _tokens(x: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """A conv's [batch, channels, length] activations as [real tokens, channels] in float64."""
    return x.detach().permute(0, 2, 1)[batch["attention_mask"].bool()].double()


def _conv_input(model, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """What conv `name` receives on `batch` (the student changes as it is fitted, so this is asked per conv)."""
    seen = {}

    def hook(module, inputs, output):
        seen["x"] = inputs[0]
        raise _Reached  # the layers after this one are not needed yet

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(**batch)
    except _Reached:
        pass
    finally:
        handle.remove()
    return _tokens(seen["x"], batch)


def _conv_outputs(model, names: list[str], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What every conv in `names` produces on `batch`, from one forward pass (the reference does not change)."""
    seen = {}
    handles = [model.get_submodule(name).register_forward_hook(lambda m, i, out, name=name: seen.update({name: out}))
               for name in names]
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def ridge_fit(x: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [out, in] and bias [out] minimising |x W^T + b - y|^2 + ridge * mean(diag(x^T x)) * |W|^2."""
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    gram = xa.T @ xa
    penalty = torch.eye(len(gram), dtype=gram.dtype) * ridge * gram.diagonal()[:-1].mean()
    penalty[-1, -1] = 0  # the bias is not shrunk
    solution = torch.linalg.solve(gram + penalty, xa.T @ y)
    return solution[:-1].T, solution[-1]


def conv_names(model) -> list[str]:
    """Every Conv1d of the encoder in the order a forward pass reaches them."""
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Conv1d)]


def fit_grouped_convs(student, reference, batch: dict[str, torch.Tensor], ridge: float = 1e-2, log=None) -> list[dict]:
    """Refit every conv of `student` (grouped) to `reference` (its uncut twin, same layout) in place.

    Returns one record per conv: the mean squared error to the reference's output before and after.
    """
    student.eval()
    reference.eval()
    names = conv_names(student)
    targets = _conv_outputs(reference, names, batch)
    records = []
    for name in names:
        conv = student.get_submodule(name)
        x, target = _conv_input(student, name, batch), _tokens(targets.pop(name), batch)
        groups = conv.groups
        o, i = conv.out_channels // groups, conv.in_channels // groups

        @torch.no_grad()
        def error() -> float:
            w = conv.weight.double()[..., 0]
            blocks = torch.block_diag(*(w[g * o : (g + 1) * o] for g in range(groups)))
            return float(((x @ blocks.T + conv.bias.double() - target) ** 2).mean())

        before = error()
        fits = [ridge_fit(x[:, g * i : (g + 1) * i], target[:, g * o : (g + 1) * o], ridge) for g in range(groups)]
        with torch.no_grad():
            conv.weight.copy_(torch.cat([w for w, _ in fits]).unsqueeze(-1))
            conv.bias.copy_(torch.cat([b for _, b in fits]))
        records.append({"conv": name, "mse_before": before, "mse_after": error()})
        if log:
            log(f"least squares {name}: mse {before:.4f} -> {records[-1]['mse_after']:.4f}")
    return records
