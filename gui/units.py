"""How the readouts write durations."""
from __future__ import annotations


def ms(value: float) -> str:
    """Milliseconds: one decimal from 1 ms up, two below it, so that a 0.03 ms step (tokenising a sentence) does not
    read as 0.0."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"
