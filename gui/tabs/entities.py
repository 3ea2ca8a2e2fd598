from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableView,
    QTextEdit,
)

from gui.style import ENTITY_COLORS, ENTITY_NAMES, entity_color
from gui.tabs.base import SingleTextTab
from gui.tabs.sentiment import model_line
from gui.textspan import Utf16Positions

MAX_HIGHLIGHTS = 1000  # beyond this the table still lists everything; the UI thread stays responsive


def highlight(editor: QPlainTextEdit, spans: list[tuple[int, int, str]], text: str) -> None:
    """Background colours on (start, end, colour) character spans of `text`, without touching the document."""
    to_qt = Utf16Positions(text)
    selections = []
    for start, end, color in spans[:MAX_HIGHLIGHTS]:
        selection = QTextEdit.ExtraSelection()
        cursor = QTextCursor(editor.document())
        cursor.setPosition(to_qt(start))
        cursor.setPosition(to_qt(end), QTextCursor.KeepAnchor)
        fmt = QTextCharFormat()
        fmt.setBackground(QColor(color))
        fmt.setForeground(QColor("#1a1a1a"))
        selection.cursor, selection.format = cursor, fmt
        selections.append(selection)
    editor.setExtraSelections(selections)


class EntityTableModel(QAbstractTableModel):
    """Entities as rows, computed on demand: thousands of rows cost nothing until they are scrolled into view."""

    HEADERS = ("Entity", "Type", "Score", "Characters")

    def __init__(self):
        super().__init__()
        self.entities = []

    def set_entities(self, entities) -> None:
        self.beginResetModel()
        self.entities = list(entities)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.entities)

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.DisplayRole):
        if role == Qt.DisplayRole and orientation == Qt.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index, role=Qt.DisplayRole):
        e = self.entities[index.row()]
        col = index.column()
        if role == Qt.DisplayRole:
            return (e.word, ENTITY_NAMES.get(e.entity_group, e.entity_group), f"{e.score:.2f}", f"{e.start}–{e.end}")[col]
        if col == 1 and role == Qt.BackgroundRole:
            return QColor(entity_color(e.entity_group))
        if col == 1 and role == Qt.ForegroundRole:
            return QColor("#1a1a1a")
        return None


class EntitiesTab(SingleTextTab):
    task = "entities"
    title = "Entities"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.editor = self.make_editor("Paste news, a letter, a report… people, organisations and places light up.")
        legend = QHBoxLayout()
        for entity_type, color in ENTITY_COLORS.items():
            chip = QLabel(f"{ENTITY_NAMES[entity_type]} ({entity_type})")
            chip.setProperty("class", "chip")
            chip.setStyleSheet(f"background: {color}; color: #1a1a1a; border-radius: 4px; padding: 2px 8px;")
            legend.addWidget(chip)
        legend.addStretch(1)
        self.detail = QLabel("")
        legend.addWidget(self.detail)
        self.model = EntityTableModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        for col, width in ((1, 130), (2, 70), (3, 110)):
            header.setSectionResizeMode(col, QHeaderView.Fixed)
            self.table.setColumnWidth(col, width)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.selectionModel().selectionChanged.connect(self._row_selected)
        self.layout_.addWidget(self.editor, 3)
        self.layout_.addLayout(legend)
        self.layout_.addWidget(self.message)
        self.layout_.addWidget(self.table, 2)
        self._analysed_text = ""

    def clear_marks(self) -> None:
        self.editor.setExtraSelections([])

    def render_result(self, result) -> None:
        text = self.editor.toPlainText()
        self._analysed_text = text
        entities = result.entities
        if all(text[e.start : e.end] == e.word for e in entities):  # still the text the result is about
            highlight(self.editor, [(e.start, e.end, entity_color(e.entity_group)) for e in entities], text)
        self.model.set_entities(entities)
        shown = "" if len(entities) <= MAX_HIGHLIGHTS else f" (first {MAX_HIGHLIGHTS} highlighted)"
        self.detail.setText(f"{len(entities)} entities{shown} · " + model_line(result))

    def _row_selected(self, *_) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or self.last_result is None:
            return
        e = self.last_result.entities[rows[0].row()]
        text = self.editor.toPlainText()
        if text[e.start : e.end] != e.word:
            return
        to_qt = Utf16Positions(text)
        cursor = self.editor.textCursor()
        cursor.setPosition(to_qt(e.start))
        cursor.setPosition(to_qt(e.end), QTextCursor.KeepAnchor)
        self.editor.setTextCursor(cursor)
        self.editor.ensureCursorVisible()
