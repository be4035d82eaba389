"""The fabric as a picture: ``aiinfra fabric draw`` (SVG, and PNG through matplotlib when installed).

Drawn from the one fabric model (:mod:`aiinfra.spec.cluster`: each GPU node's SU, leaves and spine
groups; :class:`~aiinfra.spec.fabric.FabricSummary`: switch counts), the one topology.conf, the
inventory and :mod:`aiinfra.render.cabling` are rendered from. A matrix: one row per rail (its spine
group at the left, a line through the rail's leaf in every SU), one column per SU (its node count and
leaf oversubscription below); then a table of the SUs and the nodes out of service (the blueprint's
``nodes:``) or failed (``--results``), named. At 512 nodes that is 16 columns, not 512 glyphs.

The picture is a list of shapes (:class:`Rect`, :class:`Line`, :class:`Text`) laid out on a pixel
grid; :func:`to_svg` writes it with integer coordinates in a fixed order, so the same blueprint gives
the same bytes. Text is monospaced, so its width is known without a font.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from ClusterShell.NodeSet import NodeSet

from aiinfra.render.cabling import first_uplink, gpu_hosts_by_su, spine_groups, uplinks
from aiinfra.spec.cluster import Cluster, su_name

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
CHAR = 0.6  # advance of a monospaced glyph, in em (DejaVu Sans Mono: 1233/2048)
#: Okabe-Ito's colour-blind-safe palette (less black and yellow), one colour per rail, repeated.
RAIL_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7f7f7f", "#8c564b")
MARK_COLOURS = {"drain": "#e69f00", "down": "#d55e00", "failed": "#b2182b"}
INK, FAINT, PAPER = "#222222", "#777777", "#ffffff"


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int
    fill: str = "none"
    stroke: str = INK
    width: int = 1


@dataclass(frozen=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int
    stroke: str = INK
    width: int = 1


@dataclass(frozen=True)
class Text:
    x: int
    y: int  # baseline
    text: str
    size: int = 12
    fill: str = INK
    anchor: str = "start"  # start | middle | end
    bold: bool = False


Shape = Rect | Line | Text


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    shapes: tuple[Shape, ...]
    title: str


@dataclass(frozen=True)
class Mark:
    """Nodes of one SU out of service (``drain``/``down``, the blueprint's ``nodes:``) or ``failed``."""

    su: int | None
    kind: str
    reason: str
    hosts: str  # folded hostlist


def text_width(text: str, size: int) -> int:
    return round(len(text) * size * CHAR)


def node_marks(cluster: Cluster, failed: Mapping[str, str] | None = None) -> list[Mark]:
    """Drained, down and failed nodes, folded per SU, kind and reason (in SU, kind and first node order)."""
    found: dict[tuple[int, str, str], list[str]] = {}
    for group in cluster.groups.values():
        for host, state in group.states.items():
            found.setdefault((cluster.hosts[host].su or 0, state.state, state.reason), []).append(host)
    for host, reason in (failed or {}).items():
        su = cluster.hosts[host].su if host in cluster.hosts else None
        found.setdefault((su or 0, "failed", reason), []).append(host)
    marks = [(su, kind, NodeSet.fromlist(hosts), reason) for (su, kind, reason), hosts in found.items()]
    return [Mark(su or None, kind, reason, str(hosts))
            for su, kind, hosts, reason in sorted(marks, key=lambda m: (m[0], m[1], m[2][0], m[3]))]


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def oversubscription(down: int, up: int) -> str:
    """``32:32 (1:1)``: a leaf's nodes to its uplinks, and the ratio when the nodes outnumber them."""
    ratio = "1:1" if down <= up else f"{down / up:.2g}:1" if up else "no uplinks"
    return f"{down}:{up} ({ratio})"


def picture(cluster: Cluster, failed: Mapping[str, str] | None = None) -> Picture:
    """The fabric of ``cluster`` laid out; ``failed``: node -> why, from ``aiinfra fabric check``."""
    fab = cluster.fabric
    shapes: list[Shape] = []
    m = 20
    y = 32
    title = f"{cluster.env}: {fab.topology if fab else 'no fabric'}" + (f", {fab.rate.upper()}" if fab else "")
    shapes.append(Text(m, y, title, 16, bold=True))
    texts_right = [text_width(title, 16)]

    def line(text: str, size: int = 12, fill: str = INK, x: int = m) -> None:
        nonlocal y
        y += size + 6
        shapes.append(Text(x, y, text, size, fill))
        texts_right.append(x + text_width(text, size))

    if fab is None or not fab.su_count:
        line("no GPU fabric in this blueprint")
        return _finish(shapes, texts_right, y, m, title)

    by_su = gpu_hosts_by_su(cluster)
    groups = spine_groups(cluster)
    up = uplinks(cluster)
    nodes = sum(len(h) for h in by_su.values())
    line(f"{plural(nodes, 'GPU node')} in {plural(fab.su_count, 'SU')} of up to {plural(fab.su_nodes, 'node')}, "
         f"{fab.rails} rails at {fab.rate_gbps} Gb/s ({fab.node_injection_gbps} Gb/s per node)")
    spines = (f"{fab.spine_switches} spines in {fab.spine_groups} group(s) of {fab.spine_switches_per_group}"
              if fab.spine_switches else "no spines (one SU)")
    line(f"{fab.leaf_switches} leaves (one per rail per SU), {spines}; {fab.switch_radix}-port switches")
    if fab.levels == 3:
        line(f"three levels: {plural(fab.spine_groups // fab.planes, 'spine group')} of up to "
             f"{plural(fab.sus_per_spine_group, 'SU')} under {fab.core_switches} core switches in "
             f"{plural(fab.core_groups, 'group')} of {fab.core_switches_per_group}")
    else:
        line("two levels, leaf and spine: no core layer (fabric.levels: 3 adds one)")
    down_ports = "port 1" if fab.su_nodes == 1 else f"ports 1-{fab.su_nodes}"
    up_ports = f"{first_uplink(cluster)}-{first_uplink(cluster) + up - 1}: uplinks to the spine group" if up else "no uplinks"
    line(f"leaf {down_ports}: nodes; {up_ports} (aiinfra fabric cabling)", 12, FAINT)

    # ---- the matrix: rails x SUs
    sus = list(by_su)
    marks = node_marks(cluster, failed)
    marked_sus = {mk.su for mk in marks}
    box_w, label_w, col_w, row_h = 190, 92, 64, 28
    x_cols = m + box_w + 12 + label_w
    y += 34
    for i, su in enumerate(sus):
        cx = x_cols + i * col_w + col_w // 2
        shapes.append(Text(cx, y, su_name(su), 12, INK, "middle", bold=True))
    top = y + 10
    rail_of_group: dict[str, set[int]] = {}
    for g, leaves in groups.items():  # three levels: one box per plane, for the spine groups of all SUs
        plane = g.split("-", 1)[1] if fab.levels == 3 else g
        rail_of_group.setdefault(plane, set()).update(rail for _su, rail, _leaf in leaves)
    for group, rail_set in rail_of_group.items():
        rails = sorted(rail_set)
        gy, gh = top + rails[0] * row_h + 3, len(rails) * row_h - 6
        shapes.append(Rect(m, gy, box_w, gh, "#f4f4f4"))
        label = f"{group}: {fab.spine_switches_per_group} x {fab.switch_radix}p" if fab.spine_switches else group
        if fab.levels == 3:
            label = f"{group}: {fab.spine_groups // fab.planes} x {fab.spine_switches_per_group}"
        shapes.append(Text(m + 8, gy + gh // 2 + 4, label, 12))
    for rail in range(fab.rails):
        colour = RAIL_COLOURS[rail % len(RAIL_COLOURS)]
        ry = top + rail * row_h + row_h // 2
        hca = next((p.hca for hosts in by_su.values() for p in hosts[0].rails if p.rail == rail), "")
        shapes.append(Line(m + box_w, ry, x_cols + len(sus) * col_w - 8, ry, colour, 2))
        shapes.append(Text(m + box_w + 12, ry - 3, f"rail {rail}", 11, colour))
        shapes.append(Text(m + box_w + 12, ry + 10, hca, 10, FAINT))
        for i in range(len(sus)):
            shapes.append(Rect(x_cols + i * col_w + 8, ry - 8, col_w - 16, 16, PAPER, colour, 2))
    bottom = top + fab.rails * row_h
    for i, su in enumerate(sus):
        x = x_cols + i * col_w
        stroke = MARK_COLOURS["down"] if su in marked_sus else FAINT
        shapes.append(Rect(x + 3, top - 28, col_w - 6, bottom - top + 76, "none", stroke, 2 if su in marked_sus else 1))
        shapes.append(Text(x + col_w // 2, bottom + 14, plural(len(by_su[su]), "node"), 10, INK, "middle"))
        counts: dict[str, int] = {}
        for mk in marks:
            if mk.su == su:
                counts[mk.kind] = counts.get(mk.kind, 0) + len(NodeSet(mk.hosts))
        for k, kind in enumerate(sorted(counts)):  # at most drain, down, failed
            shapes.append(Text(x + col_w // 2, bottom + 27 + 13 * k, f"{counts[kind]} {kind}", 10,
                               MARK_COLOURS[kind], "middle"))
    texts_right.append(x_cols + len(sus) * col_w)
    y = bottom + 74

    # ---- the SUs
    line("scalable units: nodes, node groups, leaf down:up ports", 13)
    for su, hosts in by_su.items():
        members: dict[str, list[str]] = {}
        for h in hosts:
            members.setdefault(h.group, []).append(h.name)
        who = ", ".join(f"{g} ({cluster.groups[g].scheduler})" for g in members)
        line(f"{su_name(su)}  {str(NodeSet.fromlist([h.name for h in hosts])):<16} {plural(len(hosts), 'node'):>9}  "
             f"{oversubscription(len(hosts), up):<14} {who}", 12, INK, m + 12)
    y += 10
    line("nodes out of service or failed" + ("" if marks else ": none"), 13)
    for mk in marks:
        where = su_name(mk.su) if mk.su else "-"
        reason = mk.reason if len(mk.reason) <= 100 else mk.reason[:97] + "..."
        line(f"{mk.hosts:<16} {where:<5} {mk.kind:<7} {reason}", 12, MARK_COLOURS.get(mk.kind, INK), m + 12)
    return _finish(shapes, texts_right, y, m, title)


def _finish(shapes: list[Shape], rights: list[int], y: int, margin: int, title: str) -> Picture:
    return Picture(max(rights) + margin, y + margin, tuple(shapes), title)


def to_svg(pic: Picture) -> str:
    """SVG 1.1 text of ``pic``: one element per line, attributes in a fixed order."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{pic.width}" height="{pic.height}" '
        f'viewBox="0 0 {pic.width} {pic.height}" font-family={quoteattr(FONT)}>',
        f"<title>{escape(pic.title)}</title>",
        f'<rect x="0" y="0" width="{pic.width}" height="{pic.height}" fill="{PAPER}"/>',
    ]
    for s in pic.shapes:
        if isinstance(s, Rect):
            out.append(f'<rect x="{s.x}" y="{s.y}" width="{s.w}" height="{s.h}" fill="{s.fill}" '
                       f'stroke="{s.stroke}" stroke-width="{s.width}"/>')
        elif isinstance(s, Line):
            out.append(f'<line x1="{s.x1}" y1="{s.y1}" x2="{s.x2}" y2="{s.y2}" stroke="{s.stroke}" '
                       f'stroke-width="{s.width}"/>')
        else:
            weight = ' font-weight="bold"' if s.bold else ""
            out.append(f'<text x="{s.x}" y="{s.y}" font-size="{s.size}" fill="{s.fill}" text-anchor="{s.anchor}"'
                       f'{weight} xml:space="preserve">{escape(s.text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def to_png(pic: Picture, scale: int = 2) -> bytes:
    """PNG of ``pic`` through matplotlib's Agg (optional: ``pip install 'aiinfra[png]'``); ImportError without it."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    # 1 px of the SVG = 1 pt (sizes and line widths carry over): the figure is width/72 inches, drawn
    # at 72 * scale dots per inch
    fig = Figure(figsize=(pic.width / 72, pic.height / 72), dpi=72 * scale, facecolor=PAPER)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, pic.width)
    ax.set_ylim(pic.height, 0)
    ax.set_axis_off()
    for z, s in enumerate(pic.shapes):  # painted in list order, as in the SVG
        if isinstance(s, Rect):
            ax.add_patch(Rectangle((s.x, s.y), s.w, s.h, facecolor=s.fill, edgecolor=s.stroke,
                                   linewidth=s.width, zorder=z))
        elif isinstance(s, Line):
            ax.add_line(Line2D([s.x1, s.x2], [s.y1, s.y2], color=s.stroke, linewidth=s.width, zorder=z))
        else:
            ha = {"start": "left", "middle": "center", "end": "right"}[s.anchor]
            ax.text(s.x, s.y, s.text, fontsize=s.size, color=s.fill, ha=ha, va="baseline", zorder=z,
                    family="DejaVu Sans Mono", weight="bold" if s.bold else "normal")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def fabric_svg(cluster: Cluster, failed: Mapping[str, str] | None = None) -> str:
    return to_svg(picture(cluster, failed))


def fabric_png(cluster: Cluster, failed: Mapping[str, str] | None = None) -> bytes:
    return to_png(picture(cluster, failed))
