"""Colours and the style sheet, chosen to read well on light and dark palettes."""
from __future__ import annotations

MODEL_NAMES = ("squeezebert", "bert")
MODEL_LABELS = {"squeezebert": "SqueezeBERT", "bert": "BERT"}
MODEL_COLORS = {"squeezebert": "#2e9e6a", "bert": "#d9822b"}

# Entity highlight backgrounds: saturated enough for dark text on light palettes and light text on dark ones.
ENTITY_COLORS = {"PER": "#f4a6a6", "ORG": "#9ec9f5", "LOC": "#a8e0a0", "MISC": "#f5d98a"}
ENTITY_NAMES = {"PER": "Person", "ORG": "Organisation", "LOC": "Location", "MISC": "Other"}
ANSWER_COLOR = "#ffe28a"
ALTERNATIVE_COLOR = "#d6e4ff"


def entity_color(entity_type: str) -> str:
    return ENTITY_COLORS.get(entity_type, "#d0d0d0")


STYLE_SHEET = """
QLabel#latencyTotal { font-size: 22pt; font-weight: 600; min-width: 120px; }
QLabel#modelCard { padding-left: 8px; }
QLabel#resultHeadline { font-size: 18pt; font-weight: 600; }
QLabel#errorMessage { color: #c62828; font-weight: 600; }
QLabel#speedup { font-size: 16pt; font-weight: 600; color: #2e9e6a; }
QFrame#header { border-bottom: 1px solid palette(mid); }
QPushButton#toggle { padding: 6px 14px; font-weight: 600; border: 1px solid palette(mid); }
QPushButton#toggle:checked { color: white; }
QPushButton#toggle[model="squeezebert"]:checked { background: #2e9e6a; border-color: #2e9e6a; }
QPushButton#toggle[model="bert"]:checked { background: #d9822b; border-color: #d9822b; }
QLabel.chip { border-radius: 4px; padding: 2px 8px; color: #1a1a1a; }
"""
