"""A conversation on screen: a list model over a `Transcript`, a delegate that draws each
row as plain text in its colours, and the view that loads older messages at the top.

Text is laid out with `QTextLayout` from the row's plain string and format ranges: no
HTML is ever parsed, so `<b>x</b>` shows as typed. Wrapped lines start under the message
text, so names and times stay in a column of their own.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRect,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFont,
    QFontMetricsF,
    QGuiApplication,
    QKeyEvent,
    QKeySequence,
    QPainter,
    QPalette,
    QResizeEvent,
    QShowEvent,
    QTextCharFormat,
    QTextLayout,
    QTextOption,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QMenu,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from . import colours
from .rows import Kind, Row, Span, Style, unsaid_row
from .transcript import Key, Transcript

ROW_ROLE = Qt.ItemDataRole.UserRole + 1
"""The data role that gives a row's `Row`."""

_Index = QModelIndex | QPersistentModelIndex


class MessageModel(QAbstractListModel):
    """The rows of one conversation; see `Transcript` for their order."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.transcript = Transcript()
        self.more = False
        """Older messages exist that are not loaded yet."""
        self.loading = False
        """Older messages have been asked for and have not come yet."""
        self._beginning: Key | None = None
        self._unsaid: set[int] = set()
        """The messages the operator removed while this conversation is shown."""

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's signature)
        return 0 if parent.isValid() else len(self.transcript)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.transcript):
            return None
        row = self.transcript[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.plain
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.when or None
        if role == ROW_ROLE:
            return row
        return None

    def row(self, index: int) -> Row:
        return self.transcript[index]

    @property
    def rows(self) -> list[Row]:
        return self.transcript.rows

    def add_message(self, row: Row) -> bool:
        """Show a stored message; False if it is shown already. One the operator removed
        (told before it came: a page read meanwhile, an answer) is shown removed."""
        if row.message_id in self._unsaid:
            row = unsaid_row(row)
        insertion = self.transcript.plan_message(row)
        if insertion is None:
            return False
        self.beginInsertRows(QModelIndex(), insertion.index, insertion.index)
        self.transcript.apply(insertion)
        self.endInsertRows()
        return True

    def unsay(self, message_id: int) -> None:
        """The operator removed a message: if it is shown, say so in its place (and if it
        comes later, say so then)."""
        if message_id in self._unsaid:
            return  # told again (to a client coming back)
        self._unsaid.add(message_id)
        index = self.transcript.index_of_message(message_id)
        if index is None:
            return
        self.transcript.replace_message(unsaid_row(self.transcript[index]))
        self.dataChanged.emit(self.index(index), self.index(index))

    def add_note(self, row: Row) -> None:
        insertion = self.transcript.plan_note(row)
        self.beginInsertRows(QModelIndex(), insertion.index, insertion.index)
        self.transcript.apply(insertion)
        self.endInsertRows()

    def show_beginning(self, row: Row) -> None:
        """Say above every message that there are no older ones (once)."""
        if self._beginning is not None:
            return
        insertion = self.transcript.plan_beginning(row)
        self._beginning = insertion.key
        self.beginInsertRows(QModelIndex(), insertion.index, insertion.index)
        self.transcript.apply(insertion)
        self.endInsertRows()

    def renew_beginning(self, row: Row) -> None:
        """Say the beginning in other words (nothing if it is not shown)."""
        if self._beginning is not None:
            index = self.transcript.replace(self._beginning, row)
            self.dataChanged.emit(self.index(index), self.index(index))

    def add_pending(self, row: Row) -> int:
        """Show a line on its way at the bottom; return its token for `settle()`."""
        insertion = self.transcript.plan_pending(row)
        self.beginInsertRows(QModelIndex(), insertion.index, insertion.index)
        token = self.transcript.apply(insertion)
        self.endInsertRows()
        return token

    def settle(self, token: int, row: Row) -> None:
        """A line on its way gives way to `row`: the stored message, or why it was refused."""
        index = self.transcript.index_of_pending(token)
        if index is not None:
            self.beginRemoveRows(QModelIndex(), index, index)
            self.transcript.remove_pending(token)
            self.endRemoveRows()
        if row.kind is Kind.MESSAGE:
            self.add_message(row)
        else:
            self.add_note(row)


def _utf16_length(text: str) -> int:
    """Qt counts text in UTF-16 code units: an emoji is two."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


_ISOLATE = "\u2068"
"""FIRST STRONG ISOLATE: what follows, up to `_POP`, takes its own direction, apart."""
_POP = "\u2069"


def _x_of(cursor: object) -> float:
    """`QTextLine.cursorToX()` gives `(x, position)` in PySide6 (typed as `object`)."""
    if isinstance(cursor, tuple) and cursor and isinstance(cursor[0], int | float):
        return float(cursor[0])
    return float(cursor) if isinstance(cursor, int | float) else 0.0


class MessageDelegate(QStyledItemDelegate):
    """Draws a `Row`: time, name in the sender's colour, text; yours marked in the margin."""

    PAD_X = 8
    PAD_Y = 3
    MARK = 3

    def __init__(self, view: MessageView) -> None:
        super().__init__(view)
        self._view = view
        self._layouts: OrderedDict[tuple[Row, int], QTextLayout] = OrderedDict()
        self._heights: dict[tuple[Row, int], float] = {}

    def forget_layouts(self) -> None:
        """The font or the palette changed: lay every row out again."""
        self._layouts.clear()
        self._heights.clear()

    def _text_width(self) -> int:
        # The same with or without the scroll bar, so that its coming and going does not
        # change the layout under it.
        view = self._view
        bar = view.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, view)
        inner = view.width() - 2 * view.frameWidth() - bar
        return max(60, inner - 2 * self.PAD_X - self.MARK)

    def _format(self, span: Span, row: Row, palette: QPalette) -> QTextCharFormat:
        # Every colour in a shade that reads on the background (WCAG AA, 4.5:1), light or
        # dark: the senders' and the palette's half-transparent grey read at 3.5:1 to 4:1.
        base = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base).name()
        placeholder = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.PlaceholderText)
        dim = QColor(
            colours.readable(colours.solid(placeholder.name(), placeholder.alpha(), base), base)
        )
        char = QTextCharFormat()
        if span.style is Style.NAME:
            char.setForeground(QColor(colours.readable(span.colour, base)))
            char.setFontWeight(QFont.Weight.Bold if span.bold else QFont.Weight.DemiBold)
        elif span.style in (Style.TIME, Style.NOTE):
            char.setForeground(dim)
            char.setFontItalic(span.style is Style.NOTE)
        elif span.style is Style.ERROR:
            char.setForeground(QColor(colours.readable(colours.BAD, base)))
        if row.kind is Kind.PENDING:
            char.setForeground(dim)
            char.setFontItalic(True)
        return char

    def _text(self, row: Row) -> tuple[str, list[QTextLayout.FormatRange], int]:
        """The text to lay out, its formats, and where the message text starts (in UTF-16).

        Names and message text are each wrapped in a bidirectional isolate (FSI ... PDI),
        so that a right-to-left name or text stays in its place in the line instead of
        trading places with its neighbours. (`display.safe` has escaped any isolate the
        text itself held, so these always pair up.)
        """
        palette = self._view.palette()
        parts: list[str] = []
        ranges: list[QTextLayout.FormatRange] = []
        position, characters, indent_at = 0, 0, 0
        for span in row.spans:
            if characters == row.indent:
                indent_at = position
            message_text = characters == row.indent > 0
            isolated = bool(span.text) and (span.style is Style.NAME or message_text)
            if isolated:
                parts.append(_ISOLATE)
                position += 1
            length = _utf16_length(span.text)
            format_range = QTextLayout.FormatRange()
            format_range.start, format_range.length = position, length
            format_range.format = self._format(span, row, palette)
            ranges.append(format_range)
            if message_text:
                ranges += self._mentions(span.text, row, position, format_range.format)
            parts.append(span.text)
            position += length
            characters += len(span.text)
            if isolated:
                parts.append(_POP)
                position += 1
        return "".join(parts), ranges, indent_at

    def _mentions(
        self, text: str, row: Row, position: int, plain: QTextCharFormat
    ) -> list[QTextLayout.FormatRange]:
        """Your name where the message `text` (laid out from `position`) names you: bold and
        underlined, as in the terminal."""
        marked: list[QTextLayout.FormatRange] = []
        for start, end in row.mentions:
            mention = QTextLayout.FormatRange()
            mention.start = position + _utf16_length(text[:start])
            mention.length = _utf16_length(text[start:end])
            mention.format = QTextCharFormat(plain)
            mention.format.setFontWeight(QFont.Weight.Bold)
            mention.format.setFontUnderline(True)
            marked.append(mention)
        return marked

    def layout(self, row: Row, width: int) -> QTextLayout:
        key = (row, width)
        cached = self._layouts.get(key)
        if cached is not None:
            self._layouts.move_to_end(key)
            return cached
        text, ranges, indent_at = self._text(row)
        layout = QTextLayout(text, self._view.font())
        option = QTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        option.setTextDirection(Qt.LayoutDirection.LeftToRight)
        layout.setTextOption(option)
        layout.setFormats(ranges)
        # Lines step by the font's line spacing, each on the same baseline, so that a
        # character from a taller font (an emoji, Chinese) does not make its row taller or
        # shift its text down. Much taller lines (a huge glyph) keep their own height.
        metrics = QFontMetricsF(self._view.font())
        spacing, ascent = metrics.lineSpacing(), metrics.ascent()
        layout.beginLayout()
        top, indent = 0.0, 0.0
        first = True
        while True:
            line = layout.createLine()
            if not line.isValid():
                break
            line.setLineWidth(width if first else width - indent)
            natural = line.height() >= 1.5 * spacing
            shift = 0.0 if natural else ascent - line.ascent()
            line.setPosition(QPointF(0 if first else indent, top + shift))
            if first and indent_at > 0:
                # Under the text; past half the width or the first line (a long name), a
                # few characters in: never at the edge, where each row starts its time.
                indent = metrics.horizontalAdvance("0000")
                if indent_at <= line.textStart() + line.textLength():
                    at = _x_of(line.cursorToX(indent_at))
                    indent = at if at < width / 2 else min(at, indent)
            first = False
            top += line.height() if natural else spacing
        layout.endLayout()
        self._heights[key] = top
        self._layouts[key] = layout
        if len(self._layouts) > 4000:
            old, _ = self._layouts.popitem(last=False)
            self._heights.pop(old, None)
        return layout

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        row = index.data(ROW_ROLE)
        if not isinstance(row, Row):
            return super().sizeHint(option, index)
        width = self._text_width()
        self.layout(row, width)
        height = self._heights[(row, width)]
        return QSize(self._text_width(), int(height + 0.999) + 2 * self.PAD_Y)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        row = index.data(ROW_ROLE)
        if not isinstance(row, Row):
            return
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        item.text = ""  # the background and focus only: the text comes next
        rect: QRect = item.rect
        palette: QPalette = item.palette
        selected = bool(item.state & QStyle.StateFlag.State_Selected)
        if selected:
            # The selection drawn here, not by the style, in a highlight the selection's
            # text reads on at WCAG AA: Fusion's holds white text at 3.6:1 (and draws it
            # lighter still), and a row is selected to be read and copied.
            painter.fillRect(rect, QColor(selection_colour(palette)))
            item.state &= ~QStyle.StateFlag.State_Selected
        style = self._view.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, item, painter, self._view)
        painter.save()
        role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        if row.mine:  # in the highlight's colour, or the selection's text's on it
            mark = QRect(rect.left() + 2, rect.top() + 2, self.MARK, rect.height() - 4)
            shade = role if selected else QPalette.ColorRole.Highlight
            painter.fillRect(mark, palette.color(shade))
        painter.setPen(palette.color(role))
        layout = self.layout(row, self._text_width())
        at = QPointF(rect.left() + self.PAD_X + self.MARK, rect.top() + self.PAD_Y)
        if selected:
            # The whole row in the selection's text colour: the senders' colours, the time's
            # grey and a notice's are chosen for the base colour, and on the highlight some
            # read at 1.1:1 (a row is selected to be copied: who said it must show).
            whole = QTextLayout.FormatRange()
            # Qt counts UTF-16 units: an emoji is two.
            whole.start, whole.length = 0, len(layout.text().encode("utf-16-le")) // 2
            whole.format = QTextCharFormat()
            whole.format.setForeground(palette.color(role))
            layout.draw(painter, at, [whole])
        else:
            layout.draw(painter, at)
        painter.restore()


def selection_colour(palette: QPalette) -> str:
    """The palette's highlight (in its current group: the window active or not), darkened
    or lightened as far as the selection's text needs to read on it at WCAG AA (4.5:1)."""
    highlight = palette.color(QPalette.ColorRole.Highlight).name()
    return colours.readable(highlight, palette.color(QPalette.ColorRole.HighlightedText).name())


class MessageView(QListView):
    """A conversation's rows; follows the bottom as messages arrive, asks for older messages
    (`older_wanted`) when scrolled to the top, and keeps its place when they come. Scrolled
    up, it stays where it is as rows arrive, and a button (`new_below`) says how many came and takes
    the reader down."""

    older_wanted = Signal()

    def __init__(self, model: MessageModel, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.setAccessibleName(name)
        self._model = model
        self.setModel(model)
        self._delegate = MessageDelegate(self)
        self.setItemDelegate(self._delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(False)
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setFrameShape(QListView.Shape.NoFrame)
        self._at_bottom = True
        self._anchor: tuple[QPersistentModelIndex, int] | None = None
        self._below = 0
        """Rows that came below what is on screen since the button showed."""
        self.new_below = QPushButton("↓ New below", self)
        self.new_below.setObjectName("new-below")
        self.new_below.setToolTip("Go down to what came while you read above (Ctrl+End)")
        self.new_below.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.new_below.clicked.connect(self.scroll_to_end)
        self.new_below.hide()
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._scrolled)
        bar.rangeChanged.connect(self._range_changed)
        model.rowsAboutToBeInserted.connect(self._before_insert)
        model.rowsInserted.connect(self._after_insert)

    @property
    def messages(self) -> MessageModel:
        return self._model

    # --- following the bottom, loading at the top -----------------------------------------

    def scroll_to_end(self) -> None:
        self._at_bottom = True
        self._anchor = None
        self.new_below.hide()
        self.scrollToBottom()

    def _before_insert(self, _parent: QModelIndex, first: int, _last: int) -> None:
        # Rows coming in above the top row (older messages) keep the view where it is, even
        # when it also counts as at the bottom (a view barely taller than its rows is both):
        # following the bottom then would jump away from what the reader scrolled to.
        if self._anchor is not None:
            return
        top = self.indexAt(QPoint(1, 1))
        if top.isValid() and first <= top.row():
            self._anchor = (QPersistentModelIndex(top), self.visualRect(top).top())

    def _after_insert(self, _parent: QModelIndex, first: int, last: int) -> None:
        if self._at_bottom:
            return
        # Below what is on screen: at the end, or above lines of yours still waiting
        # (they stay last), or a returning history's rows in their places.
        bottom = self.indexAt(QPoint(1, self.viewport().height() - 1))
        if bottom.isValid() and first > bottom.row():
            self._below = (self._below if self.new_below.isVisible() else 0) + last - first + 1
            self.new_below.setText(f"↓ {self._below} new below")
            self._place_new_below()
            self.new_below.show()
            self.new_below.raise_()

    def _place_new_below(self) -> None:
        self.new_below.adjustSize()
        area = self.viewport().geometry()
        size = self.new_below.size()
        self.new_below.move(area.right() - size.width() - 8, area.bottom() - size.height() - 8)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_new_below()

    def _scrolled(self, value: int) -> None:
        bar = self.verticalScrollBar()
        self._at_bottom = value >= bar.maximum() - 2
        if self._at_bottom:
            self.new_below.hide()
        if value <= bar.minimum() and bar.maximum() > bar.minimum():
            self._want_older()

    def _range_changed(self, _low: int, high: int) -> None:
        bar = self.verticalScrollBar()
        if self._anchor is not None:
            anchor, offset = self._anchor
            self._anchor = None
            if anchor.isValid():
                top = self.visualRect(anchor).top()
                bar.setValue(bar.value() + top - offset)
        elif self._at_bottom:
            bar.setValue(high)

    def updateGeometries(self) -> None:
        super().updateGeometries()
        bar = self.verticalScrollBar()
        if bar.maximum() <= bar.minimum():
            self._want_older()  # nothing to scroll: fill the view first

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        bar = self.verticalScrollBar()
        if bar.value() <= bar.minimum():
            self._want_older()

    def _want_older(self) -> None:
        model = self._model
        if model.more and not model.loading and self.isVisible():
            model.loading = True
            self.older_wanted.emit()

    # --- palette, fonts, copying --------------------------------------------------------

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (
            QEvent.Type.PaletteChange,
            QEvent.Type.FontChange,
            QEvent.Type.StyleChange,
        ):
            self._delegate.forget_layouts()
            self.scheduleDelayedItemsLayout()
        super().changeEvent(event)

    def selected_text(self) -> str:
        rows = sorted(index.row() for index in self.selectedIndexes())
        return "\n".join(self._model.row(row).plain for row in rows)

    def copy(self) -> None:
        text = self.selected_text()
        if text:
            QGuiApplication.clipboard().setText(text)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            return
        super().keyPressEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        menu = QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        action = menu.addAction("Copy")
        action.setShortcut(QKeySequence(QKeySequence.StandardKey.Copy))
        action.setEnabled(bool(self.selectedIndexes()))
        action.triggered.connect(self.copy)
        menu.popup(event.globalPos())
