"""Draw the Compact SDF sidebar to a PNG from the panels' own ``draw()`` calls, against real ``bpy``.

Blender-as-a-module (the ``bpy`` wheel) has no window and no GPU context, so it cannot draw its UI
and no real screenshot can be taken headlessly. Instead this tool enables the extension in a
temporary user configuration exactly as the real-bpy tests do (``tests/blender/conftest.py``), opens
a library, ticks its shapes, and calls every panel's ``draw`` (registration order, ``poll`` and
``bl_parent_id`` respected) with a :class:`RecordingLayout`: the subset of ``UILayout`` the panels
use, which reads names and values from the real RNA, operator labels and ``poll`` from the real
operators, and list rows from the real ``UIList.draw_item``. Any other layout call raises. The
recording is then painted with Pillow in the look of Blender's dark theme, in Blender's own UI font
(Inter, from the wheel). The content is real; the look is approximated::

    .venv/bin/python tools/render_panel.py [--library out/examples.csdf] [--out docs/images/panel.png]

``bpy`` is imported inside functions: the fixtures must set ``BLENDER_USER_RESOURCES`` before the
first import.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
WIDTH = 360  # whole sidebar, tab strip included
UNIT = 20  # widget height (Blender's UI unit at scale 1)
GAP = 3  # between items that are not aligned
PAD = 8  # panel body margin
TAB = 22  # category tab strip on the right
HEADER = 26  # panel header height
FONT_SIZE = 11

REGION, PANEL, SUBHEADER, BOX = (40, 40, 40), (61, 61, 61), (56, 56, 56), (48, 48, 48)
BUTTON, FIELD, BLUE, LIST_ACTIVE = (84, 84, 84), (34, 34, 34), (71, 114, 179), (51, 77, 128)
TEXT, LABEL, OUTLINE = (230, 230, 230), (190, 190, 190), (30, 30, 30)

#: Glyphs (DejaVu Sans Mono, shipped with the wheel) standing in for Blender's icons.
ICONS = {
    "CANCEL": "⊗", "CHECKBOX_HLT": "☑", "CHECKMARK": "✓", "DUPLICATE": "❐", "ERROR": "⚠", "EXPORT": "↥",
    "FILE": "▯", "FILE_FOLDER": "▭", "FILE_NEW": "⊞", "FILE_REFRESH": "↻", "GREASEPENCIL": "✎", "IMPORT": "↧",
    "INFO": "i", "LOOP_BACK": "↺", "MESH_DATA": "△", "MOD_ARRAY": "⋯", "MOD_MESHDEFORM": "◈", "MOD_NOISE": "≈",
    "OBJECT_DATA": "▽", "QUESTION": "?", "REMOVE": "−", "TEXT": "≡", "VIEWZOOM": "⌕",
}
ICON_COLORS = {"ERROR": (240, 170, 60), "MESH_DATA": (110, 190, 110), "OBJECT_DATA": (240, 150, 80)}


@dataclass
class Widget:
    """One recorded button, field or label."""

    kind: str  # label, operator, bool, number, enum, progress, separator, list
    name: str = ""  # label or button text, property name ("" for none)
    value: str = ""  # shown value of a number or enum property
    icon: str = "NONE"
    split: bool = False  # name in the left column (``use_property_split``)
    checked: bool = False
    factor: float | None = None  # fill of a slider or progress bar
    usable: bool = True  # operator poll
    rows: list[RecordingLayout] = field(default_factory=list)  # list items (template_list)
    active_row: int = -1
    min_rows: int = 0


class OperatorProperties:
    """What ``operator()`` returns: accepts assignments to the operator's own properties only."""

    def __init__(self, rna: Any) -> None:
        object.__setattr__(self, "_rna", rna)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._rna.properties:
            raise AttributeError(f"operator {self._rna.identifier} has no property {name!r}")
        object.__setattr__(self, name, value)


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout``: records a tree of layouts and widgets.

    Supports exactly what the extension's panels call; any other method or attribute raises, so a
    new layout call fails loudly here instead of vanishing from the picture.
    """

    __slots__ = ("kind", "align", "heading", "children", "enabled", "active", "alignment", "use_property_split")

    def __init__(self, kind: str = "column", *, align: bool = False, heading: str = "", split: bool = False) -> None:
        self.kind, self.align, self.heading = kind, align, heading
        self.children: list[RecordingLayout | Widget] = []
        self.enabled = self.active = True
        self.alignment = "EXPAND"
        self.use_property_split = split

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"UILayout.{name} is not supported by tools/render_panel.py: add it there")

    def _add(self, child: RecordingLayout | Widget) -> Any:
        self.children.append(child)
        return child

    def row(self, *, align: bool = False, heading: str = "") -> RecordingLayout:
        return self._add(RecordingLayout("row", align=align, heading=heading, split=self.use_property_split))

    def column(self, *, align: bool = False) -> RecordingLayout:
        return self._add(RecordingLayout("column", align=align, split=self.use_property_split))

    def box(self) -> RecordingLayout:
        return self._add(RecordingLayout("box", split=self.use_property_split))

    def separator(self) -> None:
        self._add(Widget("separator"))

    def label(self, *, text: str = "", icon: str = "NONE", translate: bool = True) -> None:
        self._add(Widget("label", text, icon=icon))

    def progress(self, *, factor: float = 0.0, text: str = "", translate: bool = True) -> None:
        self._add(Widget("progress", text, factor=factor))

    def operator(self, idname: str, *, text: str | None = None, icon: str = "NONE") -> OperatorProperties:
        import bpy

        module, _, name = idname.partition(".")
        op = getattr(getattr(bpy.ops, module), name)
        rna = op.get_rna_type()
        self._add(Widget("operator", rna.name if text is None else text, icon=icon, usable=op.poll()))
        return OperatorProperties(rna)

    def prop(self, data: Any, prop: str, *, text: str | None = None, slider: bool = False, index: int = -1,
             translate: bool = True) -> None:
        rna = data.bl_rna.properties[prop]
        name = rna.name if text is None else text
        value = getattr(data, prop) if index < 0 else getattr(data, prop)[index]
        in_row = self.kind == "row"
        if in_row and self.use_property_split and not self.heading and not self.children:
            self.heading, name = name, ""  # the row's first property names it, in the left column
        widget = Widget("", name, split=self.use_property_split and not in_row)
        if rna.type == "BOOLEAN":
            widget.kind, widget.checked = "bool", bool(value)
        elif rna.type == "ENUM":
            widget.kind, widget.value = "enum", rna.enum_items[value].name
        elif rna.type in {"INT", "FLOAT"}:
            widget.kind = "number"
            widget.value = str(value) if rna.type == "INT" else f"{value:.{rna.precision}f}"
            if slider or rna.subtype in {"FACTOR", "PERCENTAGE"}:
                low, high = rna.soft_min, rna.soft_max
                widget.factor = min(max((value - low) / (high - low), 0.0), 1.0)
        else:
            raise NotImplementedError(f"{rna.type} property {prop!r}: add it to tools/render_panel.py")
        self._add(widget)

    def template_list(self, listtype_name: str, list_id: str, dataptr: Any, propname: str, active_dataptr: Any,
                      active_propname: str, *, rows: int = 5) -> None:
        import bpy

        ui_list = getattr(bpy.types, listtype_name)
        widget = Widget("list", active_row=getattr(active_dataptr, active_propname), min_rows=rows)
        for index, item in enumerate(getattr(dataptr, propname)):
            line = RecordingLayout("row")
            ui_list.draw_item(None, bpy.context, line, dataptr, item, 0, active_dataptr, active_propname, index)
            widget.rows.append(line)
        self._add(widget)


@dataclass
class RecordedPanel:
    """A panel that passed ``poll``: its sidebar tab, header label, recorded body and sub-panels."""

    category: str
    label: str
    body: RecordingLayout
    closed: bool
    children: list[RecordedPanel] = field(default_factory=list)


def record_panels(addon: ModuleType, context: Any) -> list[RecordedPanel]:
    """Call every panel of ``addon`` (its registration order) with a recording layout; the top-level ones."""
    import bpy

    recorded: dict[str, RecordedPanel] = {}
    top: list[RecordedPanel] = []
    for cls in addon._CLASSES:
        if not issubclass(cls, bpy.types.Panel):
            continue
        if hasattr(cls, "draw_header") or hasattr(cls, "draw_header_preset"):
            raise NotImplementedError(f"{cls.__name__} draws its header: add that to tools/render_panel.py")
        parent = getattr(cls, "bl_parent_id", "")
        if (parent and parent not in recorded) or (hasattr(cls, "poll") and not cls.poll(context)):
            continue  # hidden, or its parent is
        body = RecordingLayout()
        cls.draw(SimpleNamespace(layout=body), context)
        closed = "DEFAULT_CLOSED" in getattr(cls, "bl_options", set())
        panel = RecordedPanel(cls.bl_category, cls.bl_label, body, closed)
        recorded[cls.bl_idname] = panel
        (recorded[parent].children if parent else top).append(panel)
    return top


def _fonts() -> tuple[ImageFont.FreeTypeFont, ImageFont.FreeTypeFont, ImageFont.FreeTypeFont]:
    """Blender's UI font (Inter), a medium weight of it for headers, and the icon glyph font."""
    import bpy

    folder = Path(bpy.utils.system_resource("DATAFILES", path="fonts"))
    text, header = (ImageFont.truetype(str(folder / "Inter.woff2"), FONT_SIZE) for _ in range(2))
    header.set_variation_by_name("Medium")
    return text, header, ImageFont.truetype(str(folder / "DejaVuSansMono.woff2"), FONT_SIZE + 3)


def _dim(color: tuple[int, int, int], dim: bool) -> tuple[int, int, int]:
    return tuple((c + b) // 2 for c, b in zip(color, PANEL)) if dim else color


Corners = tuple[bool, bool, bool, bool]  # top-left, top-right, bottom-right, bottom-left
ROUND: Corners = (True, True, True, True)


class Painter:
    """Lays out and paints a recording; with no canvas it only measures heights."""

    def __init__(self, canvas: ImageDraw.ImageDraw | None) -> None:
        self.canvas = canvas
        self.font, self.header_font, self.icon_font = _fonts()

    # -- text ---------------------------------------------------------------------------------------
    def text_width(self, text: str, icon: str = "NONE") -> int:
        """Width of ``text`` after an optional icon (which takes a little less room alone)."""
        icon_width = 0 if icon == "NONE" else UNIT - (0 if text else 4)
        return icon_width + (math.ceil(self.font.getlength(text)) if text else 0)

    def text(self, x: int, y: int, w: int, text: str, *, icon: str = "NONE", align: str = "left",
             color: tuple[int, int, int] = TEXT, dim: bool = False, font: ImageFont.FreeTypeFont | None = None) -> None:
        """``text`` (with an icon before it) in the box x..x+w of height UNIT, cut with an ellipsis to fit."""
        if self.canvas is None or w <= 0:
            return
        font = font or self.font
        room = w - (self.text_width(text, icon) - self.text_width(text))
        if text and font.getlength(text) > room:
            while text and font.getlength(text + "…") > room:
                text = text[:-1]
            text += "…"
        width = self.text_width(text, icon)
        left = {"left": x, "center": x + (w - width) // 2, "right": x + w - width}[align]
        if icon != "NONE":
            if icon not in ICONS:
                raise KeyError(f"no glyph for icon {icon}: add it to ICONS in tools/render_panel.py")
            glyph_color = _dim(ICON_COLORS.get(icon, TEXT), dim)
            self.canvas.text((left + (UNIT - 4) // 2, y + UNIT // 2), ICONS[icon], font=self.icon_font,
                             fill=glyph_color, anchor="mm")
            left += UNIT
        if text:
            self.canvas.text((left, y + UNIT // 2), text, font=font, fill=_dim(color, dim), anchor="lm")

    def rect(self, x: int, y: int, w: int, h: int, fill: tuple[int, int, int], corners: Corners = ROUND,
             radius: int = 4, outline: tuple[int, int, int] | None = OUTLINE) -> None:
        if self.canvas is not None and w > 0:
            self.canvas.rounded_rectangle((x, y, x + w - 1, y + h - 1), radius=radius, fill=fill, outline=outline,
                                          corners=corners)

    # -- layouts ------------------------------------------------------------------------------------
    def natural(self, node: RecordingLayout | Widget) -> tuple[int, bool]:
        """Width a node asks for in a row, and whether it keeps it (icon-only buttons, checkboxes)."""
        if isinstance(node, RecordingLayout):
            sizes = [self.natural(child) for child in node.children]
            widths = [w for w, _ in sizes] or [0]
            return (sum(widths) if node.kind == "row" else max(widths)), bool(sizes) and all(f for _, f in sizes)
        if node.kind == "separator":
            return UNIT // 2, True
        if node.kind in {"operator", "bool"} and not node.name:
            return UNIT + (2 if node.kind == "operator" else 0), True
        extra = {"label": 4, "bool": UNIT, "number": 24, "enum": UNIT + 12}.get(node.kind, 16)
        return self.text_width(node.name, node.icon) + self.text_width(node.value) + extra, False

    def node(self, node: RecordingLayout | Widget, x: int, y: int, w: int, dim: bool, corners: Corners = ROUND,
             alignment: str = "EXPAND") -> int:
        """Lay out (and paint) ``node`` at x, y in width w; its height."""
        if isinstance(node, Widget):
            return self.widget(node, x, y, w, dim, corners, alignment)
        dim = dim or not (node.enabled and node.active)
        if node.kind == "box":
            canvas, self.canvas = self.canvas, None  # measure first: the box is painted under its content
            height = self.column(node, x + 6, y + 6, w - 12, dim) + 12
            self.canvas = canvas
            self.rect(x, y, w, height, BOX, outline=(34, 34, 34))
            self.column(node, x + 6, y + 6, w - 12, dim)
            return height
        if node.kind == "row":
            return self.row(node, x, y, w, dim, corners)
        return self.column(node, x, y, w, dim, corners)

    def column(self, node: RecordingLayout, x: int, y: int, w: int, dim: bool, corners: Corners = ROUND) -> int:
        top, last = y, len(node.children) - 1
        for i, child in enumerate(node.children):
            piece = corners
            if node.align:
                piece = (corners[0] and i == 0, corners[1] and i == 0, corners[2] and i == last,
                         corners[3] and i == last)
            y += self.node(child, x, y, w, dim, piece, node.alignment) + (0 if node.align else GAP)
        return max(y - top - (0 if node.align or not node.children else GAP), 0)

    def row(self, node: RecordingLayout, x: int, y: int, w: int, dim: bool, corners: Corners) -> int:
        if node.use_property_split and node.heading:
            left = int(w * 0.4)
            self.text(x, y, left - 8, node.heading, align="right", color=LABEL, dim=dim)
            x, w = x + left, w - left
        gap = 0 if node.align else GAP
        sizes = [self.natural(child) for child in node.children]
        room = w - gap * max(len(sizes) - 1, 0)
        if node.alignment == "EXPAND":
            flexible = sum(width for width, fixed in sizes if not fixed) or 1
            spare = room - sum(width for width, fixed in sizes if fixed)
            widths = [width if fixed else spare * width // flexible for width, fixed in sizes]
        else:
            widths = [width for width, _ in sizes]
            x += {"LEFT": 0, "CENTER": (room - sum(widths)) // 2, "RIGHT": room - sum(widths)}[node.alignment]
        height, last = 0, len(widths) - 1
        for i, (child, width) in enumerate(zip(node.children, widths)):
            piece = corners
            if node.align:
                piece = (corners[0] and i == 0, corners[1] and i == last, corners[2] and i == last,
                         corners[3] and i == 0)
            height = max(height, self.node(child, x, y, width, dim, piece, node.alignment))
            x += width + gap
        return height

    # -- widgets ------------------------------------------------------------------------------------
    def widget(self, node: Widget, x: int, y: int, w: int, dim: bool, corners: Corners, alignment: str) -> int:
        dim = dim or not node.usable
        if node.kind == "separator":
            return UNIT // 2 - GAP
        if node.kind == "list":
            return self.list(node, x, y, w, dim)
        if node.split:
            left = int(w * 0.4)
            if node.kind != "bool":
                self.text(x, y, left - 8, node.name, align="right", color=LABEL, dim=dim)
                node = replace(node, name="")  # the field shows the value only
            x, w = x + left, w - left
        if node.kind == "label":
            self.text(x, y, w, node.name, icon=node.icon, dim=dim,
                      align={"RIGHT": "right", "CENTER": "center"}.get(alignment, "left"))
        elif node.kind == "operator":
            self.rect(x, y, w, UNIT, _dim(BUTTON, dim), corners)
            self.text(x + 2, y, w - 4, node.name, icon=node.icon, align="center", dim=dim)
        elif node.kind == "bool":
            box = UNIT - 6
            self.rect(x + 2, y + 3, box, box, _dim(BLUE if node.checked else BUTTON, dim), radius=3)
            if node.checked:
                self.text(x + 2 + (box - UNIT + 4) // 2, y, UNIT, "", icon="CHECKMARK", dim=dim)
            self.text(x + box + 8, y, w - box - 8, node.name, dim=dim)
        elif node.kind in {"number", "progress"}:
            self.rect(x, y, w, UNIT, _dim(BUTTON if node.kind == "number" else FIELD, dim), corners)
            if node.factor is not None and node.factor > 0:
                self.rect(x, y, max(int(w * node.factor), 6), UNIT, _dim(BLUE, dim), corners, outline=None)
            if node.name and node.kind == "number":
                self.text(x + 8, y, w - 16, node.name, dim=dim)
                self.text(x + 8, y, w - 16, node.value, align="right", dim=dim)
            else:
                self.text(x + 4, y, w - 8, node.value or node.name, align="center", dim=dim)
        elif node.kind == "enum":
            self.rect(x, y, w, UNIT, _dim(FIELD, dim), corners)
            self.text(x + 8, y, w - 24, node.value, dim=dim)
            self.text(x + w - 18, y, 12, "▾", color=LABEL, dim=dim, font=self.icon_font)
        else:
            raise NotImplementedError(f"cannot paint a {node.kind!r} widget")
        return UNIT

    def list(self, node: Widget, x: int, y: int, w: int, dim: bool) -> int:
        """A UIList: its rows (drawn by the real ``draw_item``) in a dark box, the active one highlighted."""
        count = max(node.min_rows, len(node.rows))
        height = count * UNIT + 8 + 10
        self.rect(x, y, w, height, FIELD, outline=(30, 30, 30))
        for index, line in enumerate(node.rows):
            top = y + 4 + index * UNIT
            if index == node.active_row:
                self.rect(x + 3, top, w - 6, UNIT, LIST_ACTIVE, radius=3, outline=None)
            self.node(line, x + 6, top, w - 12, dim)
        self.text(x, y + height - 14, w, "⋯", align="center", color=LABEL, font=self.icon_font)
        return height

    # -- panels -------------------------------------------------------------------------------------
    def panel(self, panel: RecordedPanel, x: int, y: int, w: int, sub: bool) -> int:
        """Header (a triangle and the label), then the body and sub-panels unless closed; the height."""
        if sub:
            self.rect(x, y, w, HEADER - 2, SUBHEADER, radius=3, outline=None)
        arrow = "▸" if panel.closed else "▾"
        self.text(x + 6, y + (HEADER - UNIT) // 2 - 1, 14, arrow, color=LABEL, font=self.icon_font)
        self.text(x + 22, y + (HEADER - UNIT) // 2 - 1, w - 28, panel.label, font=self.header_font)
        height = HEADER
        if panel.closed:
            return height
        height += 4 + self.column(panel.body, x + PAD, y + height + 4, w - 2 * PAD, False)
        height += PAD if panel.body.children else 0
        for child in panel.children:
            height += self.panel(child, x, y + height, w, True) + 2
        return height


def paint(panels: list[RecordedPanel], width: int = WIDTH) -> Image.Image:
    """The recorded panels as a dark-theme sidebar ``width`` px wide, with the category tab on the right."""
    area = width - TAB - 10

    def layout(painter: Painter) -> list[int]:
        tops, y = [], 6
        for panel in panels:
            tops.append(y)
            y += painter.panel(panel, 5, y, area, False) + 6
        return [*tops, y]

    *tops, height = layout(Painter(None))
    image = Image.new("RGB", (width, height), REGION)
    canvas = ImageDraw.Draw(image)
    painter = Painter(canvas)
    for top, bottom in zip(tops, [*tops[1:], height]):
        painter.rect(5, top, area, bottom - top - 6, PANEL, radius=6, outline=None)
    layout(painter)
    tab = Image.new("RGB", (height, TAB), (32, 32, 32))  # the category tabs, drawn lying, then stood up
    strip, left = ImageDraw.Draw(tab), 6
    for category in dict.fromkeys(panel.category for panel in panels):
        right = left + 24 + painter.font.getlength(category)
        strip.rounded_rectangle((left, 1, right, TAB - 2), radius=4, fill=PANEL)
        strip.text((left + 12, TAB // 2), category, font=painter.font, fill=TEXT, anchor="lm")
        left = right + 4
    image.paste(tab.rotate(-90, expand=True), (width - TAB, 0))
    return image


def _test_fixtures() -> ModuleType:
    """``tests/blender/conftest.py``: importing it enables the extension in a temporary user config."""
    spec = importlib.util.spec_from_file_location("csdf_blender_fixtures", REPO / "tests" / "blender" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=REPO / "out" / "examples.csdf",
                        help="library to open (default: the one README's first command writes)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "panel.png")
    args = parser.parse_args(argv)
    if not args.library.is_file():
        sys.exit(f"No library at {args.library}: make one first, e.g. "
                 ".venv/bin/python -m backend encode examples/meshes/*.obj -o out/examples.csdf")
    fixtures = _test_fixtures()
    import bpy

    try:
        bpy.ops.wm.read_homefile(use_empty=True)
        bpy.ops.csdf.library_open(filepath=str(args.library.resolve()))
        bpy.ops.csdf.shapes_use_all()
        image = paint(record_panels(sys.modules[fixtures.ADDON], bpy.context))
    finally:
        fixtures.pytest_sessionfinish(None, 0)  # disable the extension, remove the temporary config
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({image.width}×{image.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
