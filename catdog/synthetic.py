"""Deterministic synthetic cat and dog pictures drawn with Pillow.

The pictures are cartoon heads (with an optional body) on a cluttered background.
The class shows only in *shape*: cats have pointed triangular ears, almond eyes,
a small nose and whiskers; dogs have floppy rounded ears, round eyes, a long
muzzle with a big nose and sometimes a tongue. Everything else (fur colour and
markings, position, scale, rotation, background, clutter, blur, pixel noise) is
drawn from the same distribution for both classes, so colour alone does not
give the class away.

Every picture gets its own random generator seeded from ``(seed, label, index)``,
so the output is byte-identical for the same arguments and picture ``k`` does not
depend on how many pictures are generated.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from catdog.vocabulary import LABELS

__all__ = ["draw_animal", "draw_animal_with_head_box", "generate_synthetic"]
"""The two class labels, in the order of their numeric ids (cat=0, dog=1)."""

_SUPERSAMPLE = 2

Color = tuple[int, int, int]
Point = tuple[float, float]
Box = tuple[int, int, int, int]

# Palettes shared by both classes: the class must not show in colour.
_FUR: tuple[Color, ...] = (
    (226, 140, 58),  # ginger
    (128, 128, 132),  # grey
    (42, 40, 38),  # black
    (238, 234, 224),  # white
    (150, 102, 62),  # brown
    (222, 198, 150),  # cream
    (92, 70, 54),  # dark brown
    (186, 180, 170),  # silver
    (200, 160, 102),  # tan
    (74, 78, 90),  # blue grey
)
_LIGHT: tuple[Color, ...] = ((246, 244, 236), (236, 222, 196), (214, 206, 196), (250, 236, 214))
_ACCENT: tuple[Color, ...] = ((232, 150, 162), (204, 112, 124), (36, 30, 30), (86, 56, 44))
_TONGUE: tuple[Color, ...] = ((232, 120, 140), (214, 92, 110), (240, 150, 160))
_IRIS: tuple[Color, ...] = (
    (112, 170, 60),  # green
    (214, 160, 40),  # amber
    (110, 70, 40),  # brown
    (90, 150, 210),  # blue
    (40, 36, 34),  # near black
)
_WHISKER: tuple[Color, ...] = ((245, 245, 245), (40, 40, 40), (160, 160, 160))


def _check_label(label: str) -> int:
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    return LABELS.index(label)


def _check_int(name: str, value: int, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value!r}")


def _jitter(rng: np.random.Generator, color: Color, amount: int = 18) -> Color:
    c = np.asarray(color) + rng.integers(-amount, amount + 1, size=3)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _pick(rng: np.random.Generator, palette: Sequence[Color], amount: int = 18) -> Color:
    return _jitter(rng, palette[int(rng.integers(len(palette)))], amount)


def _shade(color: Color, factor: float) -> Color:
    """Darken (factor < 1) or lighten towards white (factor > 1) a colour."""
    c = np.asarray(color, dtype=float)
    c = c * factor if factor <= 1 else c + (255 - c) * (factor - 1)
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


def _random_color(rng: np.random.Generator) -> Color:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))  # type: ignore[return-value]


class _Frame:
    """Maps the animal's local frame (head centre at 0,0, head radius 1) to pixels."""

    def __init__(self, cx: float, cy: float, radius: float, angle: float) -> None:
        self.cx, self.cy, self.r = cx, cy, radius
        self.cos, self.sin = math.cos(angle), math.sin(angle)

    def pts(self, points: Sequence[Point]) -> list[Point]:
        return [
            (
                self.cx + self.r * (x * self.cos - y * self.sin),
                self.cy + self.r * (x * self.sin + y * self.cos),
            )
            for x, y in points
        ]

    def px(self, length: float) -> int:
        return max(1, round(length * self.r))


def _ellipse(x: float, y: float, a: float, b: float, tilt: float = 0.0, n: int = 40) -> list[Point]:
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    ex, ey = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(tilt), math.sin(tilt)
    return list(zip((x + ex * c - ey * s).tolist(), (y + ex * s + ey * c).tolist(), strict=True))


def _arc(x: float, y: float, a: float, b: float, t0: float, t1: float, n: int = 12) -> list[Point]:
    t = np.linspace(t0, t1, n)
    return list(zip((x + a * np.cos(t)).tolist(), (y + b * np.sin(t)).tolist(), strict=True))


def _almond(x: float, y: float, w: float, h: float, tilt: float, n: int = 24) -> list[Point]:
    """A lens shape with pointed corners (cat eye), half-width w, half-height h."""
    u = np.linspace(-1.0, 1.0, n)
    top = [(w * v, -h * (1 - v * v)) for v in u]
    bottom = [(w * v, h * (1 - v * v)) for v in u[::-1][1:-1]]
    c, s = math.cos(tilt), math.sin(tilt)
    return [(x + px * c - py * s, y + px * s + py * c) for px, py in top + bottom]


# ----------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, s: int) -> Image.Image:
    """Gradient + low-frequency texture + optional stripes/tiles + clutter shapes."""
    c1 = np.asarray(_random_color(rng), dtype=np.float32)
    c2 = np.asarray(_random_color(rng), dtype=np.float32)
    if rng.random() < 0.5:  # keep many backgrounds calm
        c2 = c1 + (c2 - c1) * 0.35
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    t = (xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta) + 0.5
    img = c1 + np.clip(t, 0, 1)[..., None] * (c2 - c1)

    # Low-frequency blotches.
    amp = rng.uniform(0, 45)
    if amp > 5:
        cells = int(rng.integers(3, 9))
        low = rng.normal(0, 1, size=(cells, cells)).astype(np.float32)
        low_img = Image.fromarray(((low + 3) * 42).clip(0, 255).astype(np.uint8), mode="L")
        blotch = np.asarray(low_img.resize((s, s), Image.Resampling.BICUBIC), np.float32)
        img += ((blotch / 42.0) - 3.0)[..., None] * amp / 3

    # Regular textures: stripes (wallpaper, floor boards) or tiles.
    kind = rng.random()
    if kind < 0.2:
        period = rng.uniform(0.04, 0.2) * s
        phi = rng.uniform(0, math.pi)
        wave = np.sin(2 * math.pi * (xx * math.cos(phi) + yy * math.sin(phi)) * s / period)
        img += (np.sign(wave) * rng.uniform(8, 30))[..., None]
    elif kind < 0.35:
        period = rng.uniform(0.08, 0.25) * s
        check = ((xx * s // period) + (yy * s // period)) % 2
        img += ((check - 0.5) * rng.uniform(10, 40))[..., None]

    bg = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")
    _clutter(rng, bg, int(rng.integers(0, 11)))
    return bg


def _clutter(rng: np.random.Generator, img: Image.Image, count: int, max_r: float = 0.25) -> None:
    """Random shapes (including triangles and ellipses, like ears) as distractors."""
    s = img.width
    draw = ImageDraw.Draw(img)
    for _ in range(count):
        color = _random_color(rng)
        x, y = rng.uniform(-0.1, 1.1, size=2) * s
        r = rng.uniform(0.03, max_r) * s
        kind = int(rng.integers(6))
        if kind == 0:
            draw.polygon(_ellipse(x, y, r, r * rng.uniform(0.3, 1), rng.uniform(0, math.pi)), color)
        elif kind == 1:
            ang = rng.uniform(0, 2 * math.pi)
            pts = [
                (x + r * math.cos(ang + k * 2.1), y + r * math.sin(ang + k * 2.1)) for k in range(3)
            ]
            draw.polygon(pts, color)
        elif kind == 2:
            w, h = r, r * rng.uniform(0.3, 1.5)
            draw.rectangle((x - w, y - h, x + w, y + h), color)
        elif kind == 3:
            ang = rng.uniform(0, math.pi)
            dx, dy = r * 2 * math.cos(ang), r * 2 * math.sin(ang)
            draw.line((x - dx, y - dy, x + dx, y + dy), color, max(1, round(r * 0.15)))
        elif kind == 4:
            n = int(rng.integers(5, 9))
            angs = np.sort(rng.uniform(0, 2 * math.pi, size=n))
            rads = r * rng.uniform(0.5, 1.0, size=n)
            draw.polygon(
                [
                    (x + q * math.cos(a), y + q * math.sin(a))
                    for a, q in zip(angs, rads, strict=True)
                ],
                color,
            )
        else:
            start = rng.uniform(0, 360)
            draw.arc(
                (x - r, y - r, x + r, y + r),
                start,
                start + rng.uniform(90, 270),
                color,
                max(1, round(r * 0.12)),
            )


# ----------------------------------------------------------------------------- animal


class _Style:
    """Colour and marking choices shared by both classes (same distribution)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.fur = _pick(rng, _FUR)
        self.ear_fur = self.fur if rng.random() < 0.6 else _shade(self.fur, rng.uniform(0.5, 0.8))
        self.second = (
            _pick(rng, _FUR) if rng.random() < 0.5 else _shade(self.fur, rng.uniform(0.45, 0.75))
        )
        self.light = _pick(rng, _LIGHT, 10) if rng.random() < 0.7 else self.fur
        self.accent = _pick(rng, _ACCENT, 12)
        self.inner = _pick(rng, _ACCENT[:2] + _LIGHT[:1], 12)
        self.iris = _pick(rng, _IRIS, 14)
        self.tongue = _pick(rng, _TONGUE, 10)
        self.pattern = ("none", "spots", "stripes", "patch")[int(rng.integers(4))]
        outline = rng.random() < 0.55
        self.outline: Color | None = (
            (_shade(self.fur, 0.35) if rng.random() < 0.5 else (25, 22, 20)) if outline else None
        )
        self.line_w = rng.uniform(0.025, 0.05)
        self.body = rng.random() < 0.7
        self.body_dy = rng.uniform(0.5, 0.95)
        self.body_a = rng.uniform(0.85, 1.3)
        self.body_b = rng.uniform(0.75, 1.05)
        self.yaw = rng.uniform(-0.14, 0.14)  # shifts the face features sideways
        self.eye_dx = rng.uniform(0.33, 0.45)
        self.eye_y = rng.uniform(-0.2, -0.02)


class _Painter:
    """Draws polygons both on the picture and (optionally) on the silhouette mask."""

    def __init__(self, img: Image.Image, frame: _Frame, style: _Style) -> None:
        self.img, self.f, self.st = img, frame, style
        self.draw = ImageDraw.Draw(img)
        self.mask = Image.new("L", img.size, 0)
        self.mdraw = ImageDraw.Draw(self.mask)

    def poly(self, pts: Sequence[Point], fill: Color, *, silhouette: bool, outline: bool) -> None:
        xy = self.f.pts(pts)
        if outline and self.st.outline is not None:
            self.draw.polygon(xy, fill, self.st.outline, self.f.px(self.st.line_w))
        else:
            self.draw.polygon(xy, fill)
        if silhouette:
            self.mdraw.polygon(xy, 255)

    def line(self, pts: Sequence[Point], color: Color, width: float) -> None:
        self.draw.line(self.f.pts(pts), color, self.f.px(width), joint="curve")


def _markings(rng: np.random.Generator, p: _Painter) -> None:
    """Spots, stripes or a patch in a second colour, clipped to the fur silhouette."""
    kind = p.st.pattern
    if kind == "none":
        return
    pm = Image.new("L", p.img.size, 0)
    d = ImageDraw.Draw(pm)
    f = p.f
    if kind == "spots":
        for _ in range(int(rng.integers(3, 8))):
            x, y = rng.uniform(-1.3, 1.3), rng.uniform(-1.2, 2.0)
            a = rng.uniform(0.12, 0.35)
            d.polygon(f.pts(_ellipse(x, y, a, a * rng.uniform(0.6, 1.0), rng.uniform(0, 3))), 255)
    elif kind == "stripes":
        for k in range(int(rng.integers(3, 7))):
            y = -1.0 + k * rng.uniform(0.25, 0.4)
            bend = rng.uniform(-0.25, 0.25)
            pts = [(-1.6, y + bend), (-0.6, y - 0.05), (0.0, y), (0.6, y - 0.05), (1.6, y + bend)]
            d.line(f.pts(pts), 255, f.px(rng.uniform(0.07, 0.14)), joint="curve")
    else:
        x, y = rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.6)
        a = rng.uniform(0.35, 0.7)
        d.polygon(f.pts(_ellipse(x, y, a, a * rng.uniform(0.7, 1.2), rng.uniform(0, 3))), 255)
    p.img.paste(p.st.second, (0, 0), ImageChops.multiply(pm, p.mask))


def _body(p: _Painter, head_b: float) -> None:
    st = p.st
    if st.body:
        p.poly(
            _ellipse(0, head_b + st.body_dy, st.body_a, st.body_b),
            st.fur,
            silhouette=True,
            outline=True,
        )


def _eye_round(p: _Painter, x: float, y: float, r: float) -> None:
    p.poly(_ellipse(x, y, r, r * 1.08), (250, 250, 248), silhouette=False, outline=True)
    p.poly(_ellipse(x, y + 0.01, r * 0.7, r * 0.74), p.st.iris, silhouette=False, outline=False)
    p.poly(_ellipse(x, y + 0.01, r * 0.38, r * 0.4), (12, 10, 10), silhouette=False, outline=False)
    p.poly(
        _ellipse(x - r * 0.3, y - r * 0.35, r * 0.18, r * 0.18),
        (255, 255, 255),
        silhouette=False,
        outline=False,
    )


# _draw_cat and _draw_dog stay long on purpose: each is one picture drawn stroke by stroke, and
# the order of its random draws is the data. Splitting a drawing into helpers that draw in a
# different order would change every generated image, and every hash that dvc.lock records.
def _draw_cat(rng: np.random.Generator, p: _Painter) -> list[Point]:
    """Draws a cat; returns its head's outline (head and ears) in the animal's frame."""
    st = p.st
    a, b = rng.uniform(0.98, 1.12), rng.uniform(0.84, 0.98)  # head half-axes
    _body(p, b)
    yaw = st.yaw

    # Pointed, upright triangular ears, behind the head.
    ear_h = rng.uniform(0.45, 0.9)
    tip_x = rng.uniform(0.55, 0.85)
    base_in, base_out = rng.uniform(0.1, 0.3), rng.uniform(0.85, 1.0)
    ears = []
    for side in (-1, 1):
        inner = (side * base_in, -b * 0.92)
        outer = (side * base_out * a, -b * 0.35)
        tip = (side * tip_x + rng.uniform(-0.08, 0.08), -b - ear_h)
        ears.append((inner, tip, outer))
        p.poly([inner, tip, outer], st.ear_fur, silhouette=True, outline=True)
    head = _ellipse(0, 0, a, b, n=48)
    p.poly(head, st.fur, silhouette=True, outline=True)
    _markings(rng, p)
    for inner, tip, outer in ears:  # inner ear, drawn after the markings
        cx, cy = (inner[0] + tip[0] + outer[0]) / 3, (inner[1] + tip[1] + outer[1]) / 3
        shrink = [
            (cx + 0.55 * (x - cx), cy + 0.55 * (y - cy) - 0.04) for x, y in (inner, tip, outer)
        ]
        p.poly(shrink, st.inner, silhouette=False, outline=False)

    # Whisker pads (small cheeks), tiny nose, "w" mouth.
    pad_y = rng.uniform(0.3, 0.42)
    if rng.random() < 0.7:
        for side in (-1, 1):
            p.poly(
                _ellipse(yaw + side * 0.13, pad_y, 0.17, 0.13),
                st.light,
                silhouette=False,
                outline=False,
            )
    nose_y, nw = pad_y - rng.uniform(0.1, 0.16), rng.uniform(0.08, 0.12)
    p.poly(
        [(yaw - nw, nose_y - 0.05), (yaw + nw, nose_y - 0.05), (yaw, nose_y + nw * 0.8)],
        st.accent,
        silhouette=False,
        outline=False,
    )
    mouth = st.outline or (40, 30, 30)
    m_top = nose_y + nw * 0.8
    p.line([(yaw, m_top - 0.02), (yaw, m_top + 0.07)], mouth, 0.025)
    for side in (-1, 1):
        p.line(_arc(yaw + side * 0.08, m_top + 0.07, 0.08, 0.06, 0, math.pi), mouth, 0.025)

    # Almond eyes with slit pupils.
    ew, eh = rng.uniform(0.15, 0.2), rng.uniform(0.08, 0.12)
    slant = rng.uniform(0.1, 0.35)
    slit = rng.uniform(0.025, 0.06)
    for side in (-1, 1):
        x = yaw + side * st.eye_dx
        p.poly(_almond(x, st.eye_y, ew, eh, -side * slant), st.iris, silhouette=False, outline=True)
        p.poly(_ellipse(x, st.eye_y, slit, eh * 0.9), (12, 10, 10), silhouette=False, outline=False)

    # Whiskers: long thin lines fanning out beyond the face.
    wcol = _pick(rng, _WHISKER, 10) if rng.random() < 0.7 else _shade(st.fur, rng.uniform(0.5, 1.5))
    n_wh = int(rng.integers(2, 4))
    length = rng.uniform(1.1, 1.5)
    for side in (-1, 1):
        for k in range(n_wh):
            y0 = pad_y + (k - (n_wh - 1) / 2) * 0.06
            y1 = y0 + (k - (n_wh - 1) / 2) * rng.uniform(0.12, 0.25) + rng.uniform(-0.05, 0.05)
            p.line([(yaw + side * 0.22, y0), (yaw + side * length, y1)], wcol, 0.018)
    return head + [point for ear in ears for point in ear]


def _draw_dog(rng: np.random.Generator, p: _Painter) -> list[Point]:
    """Draws a dog; returns its head's outline (head and ears) in the animal's frame."""
    st = p.st
    a, b = rng.uniform(0.86, 1.0), rng.uniform(0.92, 1.08)
    _body(p, b)
    yaw = st.yaw
    # Floppy ears hanging from the top of the head: long (spaniel) or short flaps (lab).
    if rng.random() < 0.3:
        ear_len, ear_w = rng.uniform(0.36, 0.5), rng.uniform(0.2, 0.28)
        attach_x, attach_y = rng.uniform(0.6, 0.78), -b * rng.uniform(0.7, 0.85)
        swing = rng.uniform(0.25, 0.6)
    else:
        ear_len, ear_w = rng.uniform(0.5, 0.85), rng.uniform(0.24, 0.36)
        attach_x, attach_y = rng.uniform(0.75, 0.92) * a, -b * rng.uniform(0.55, 0.75)
        swing = rng.uniform(-0.1, 0.35)
    ear_pts = []
    for side in (-1, 1):
        tilt = -side * (swing + rng.uniform(-0.08, 0.08))  # swings the ear outwards
        # Ellipse hanging from its top end: its long axis points along (-sin, cos).
        cx = side * attach_x - math.sin(tilt) * ear_len
        cy = attach_y + math.cos(tilt) * ear_len
        ear_pts.append(_ellipse(cx, cy, ear_w, ear_len + 0.08, tilt))
    head = _ellipse(0, 0, a, b, n=48)
    p.poly(head, st.fur, silhouette=True, outline=True)
    _markings(rng, p)
    for pts in ear_pts:
        p.poly(pts, st.ear_fur, silhouette=False, outline=True)

    # Long muzzle protruding downwards, tongue below it, big nose on top.
    mx, my = yaw * 0.8, rng.uniform(0.42, 0.55)
    ma, mb = rng.uniform(0.42, 0.56), rng.uniform(0.34, 0.46)
    if rng.random() < 0.5:
        tw = rng.uniform(0.12, 0.17)
        p.poly(
            _ellipse(mx + rng.uniform(-0.06, 0.06), my + mb * 0.75, tw, tw * 1.5),
            st.tongue,
            silhouette=False,
            outline=True,
        )
    p.poly(_ellipse(mx, my, ma, mb), st.light, silhouette=False, outline=True)
    nose_y = my - mb * rng.uniform(0.35, 0.55)
    nw, nh = rng.uniform(0.17, 0.24), rng.uniform(0.11, 0.15)
    p.poly(_ellipse(mx, nose_y, nw, nh), st.accent, silhouette=False, outline=False)
    p.poly(
        _ellipse(mx - nw * 0.35, nose_y - nh * 0.4, nw * 0.25, nh * 0.22),
        _shade(st.accent, 1.5),
        silhouette=False,
        outline=False,
    )
    mouth = st.outline or (40, 30, 30)
    p.line([(mx, nose_y + nh), (mx, my + mb * 0.35)], mouth, 0.025)
    for side in (-1, 1):
        p.line(_arc(mx + side * 0.13, my + mb * 0.2, 0.13, 0.14, 0.2, math.pi - 0.2), mouth, 0.025)

    # Round eyes, sometimes with eyebrow spots.
    er = rng.uniform(0.1, 0.14)
    brows = rng.random() < 0.3
    for side in (-1, 1):
        x = yaw + side * st.eye_dx * 0.95
        if brows:
            p.poly(
                _ellipse(x, st.eye_y - er - 0.08, er * 0.8, er * 0.45),
                st.second,
                silhouette=False,
                outline=False,
            )
        _eye_round(p, x, st.eye_y, er)
    return head + [point for ear in ear_pts for point in ear]


def draw_animal(label: str, rng: np.random.Generator, size: int) -> Image.Image:
    """Draw one RGB picture of a 'cat' or 'dog' of size x size pixels.

    The animal is drawn at twice the resolution and downsampled with a Lanczos
    filter for anti-aliasing, then optionally blurred, colour-jittered and noised.

    Args:
        label: ``"cat"`` or ``"dog"``.
        rng: Source of all randomness; the picture is a pure function of its state.
        size: Width and height of the picture in pixels (at least 32).

    Returns:
        A ``size`` x ``size`` RGB image.

    Raises:
        ValueError: If ``label`` is not ``"cat"`` or ``"dog"``, or ``size`` < 32.
    """
    return draw_animal_with_head_box(label, rng, size)[0]


def draw_animal_with_head_box(
    label: str, rng: np.random.Generator, size: int
) -> tuple[Image.Image, Box]:
    """:func:`draw_animal`'s picture (the same bytes), and where the animal's head lies in it.

    The head box bounds the head and its ears (not the whiskers, nor the body), clipped to the
    picture; an occluder drawn later may hide part of it.

    Args:
        label: ``"cat"`` or ``"dog"``.
        rng: Source of all randomness; the picture is a pure function of its state.
        size: Width and height of the picture in pixels (at least 32).

    Returns:
        The picture and the head box ``(x0, y0, x1, y1)`` in its pixels, as Pillow's ``crop``
        takes it: columns ``x0`` to ``x1 - 1`` and rows ``y0`` to ``y1 - 1``.

    Raises:
        ValueError: If ``label`` is not ``"cat"`` or ``"dog"``, or ``size`` < 32.
    """
    _check_label(label)
    _check_int("size", size, 32)
    size = int(size)
    s = size * _SUPERSAMPLE

    img = _background(rng, s)
    style = _Style(rng)
    radius = rng.uniform(0.12, 0.27) * s
    if rng.random() < 0.2:  # sometimes partly outside the picture
        cx, cy = rng.uniform(0.1, 0.9) * s, rng.uniform(0.25, 0.85) * s
    else:
        cx, cy = rng.uniform(0.3, 0.7) * s, rng.uniform(0.4, 0.65) * s
    angle = math.radians(float(np.clip(rng.normal(0, 16), -45, 45)))
    frame = _Frame(cx, cy, radius, angle)
    painter = _Painter(img, frame, style)
    draw = _draw_cat if label == "cat" else _draw_dog
    head_box = _bounding_box(frame.pts(draw(rng, painter)), size)
    if rng.random() < 0.3:  # an occluder in front of the animal
        _clutter(rng, img, 1, max_r=0.12)

    img = img.resize((size, size), Image.Resampling.LANCZOS)
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5) * size / 128))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr * rng.uniform(0.8, 1.15) + rng.uniform(-20, 20)  # contrast / brightness
    arr += rng.normal(0, rng.uniform(0, 14), size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), mode="RGB"), head_box


def _bounding_box(points: Sequence[Point], size: int) -> Box:
    """Pixels of the ``size`` picture that supersampled ``points`` touch, clipped to it."""
    xs, ys = np.asarray(points, dtype=float).T / _SUPERSAMPLE
    x0, y0 = (max(0, math.floor(v.min())) for v in (xs, ys))
    x1, y1 = (min(size, math.ceil(v.max())) for v in (xs, ys))
    return x0, y0, x1, y1


def generate_synthetic(
    out_dir: Path, *, per_class: int, size: int = 128, seed: int = 0, quality: int = 90
) -> list[Path]:
    """Write per_class cats and per_class dogs as JPEGs in Kaggle's flat layout.

    Files are ``out_dir/cat.N.jpg`` and ``out_dir/dog.N.jpg`` for
    ``N = 0 .. per_class - 1``. Picture ``N`` of a class is drawn with its own
    generator ``numpy.random.default_rng([seed, label_id, N])`` (cat=0, dog=1), so
    the same arguments give byte-identical files and picture ``N`` does not depend
    on ``per_class``. Each file is written to a temporary name in ``out_dir`` and
    moved into place with :func:`os.replace`, so readers never see partial files.

    Args:
        out_dir: Directory to write into; created if missing.
        per_class: Number of pictures per class (at least 1).
        size: Width and height of each picture in pixels (at least 32).
        seed: Non-negative base seed.
        quality: JPEG quality, 1 to 100.

    Returns:
        The paths written, sorted.

    Raises:
        ValueError: If an argument is out of range; the message names it.
    """
    _check_int("per_class", per_class, 1)
    _check_int("size", size, 32)
    _check_int("seed", seed, 0)
    _check_int("quality", quality, 1, 100)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    written: list[Path] = []
    for label_id, label in enumerate(LABELS):
        for index in range(per_class):
            rng = np.random.default_rng([int(seed), label_id, index])
            img = draw_animal(label, rng, int(size))
            path = out_dir / f"{label}.{index}.jpg"
            _write_jpeg_atomic(img, path, int(quality))
            written.append(path)
    return sorted(written)


def _write_jpeg_atomic(img: Image.Image, path: Path, quality: int) -> None:
    """Write to a hidden temporary file next to ``path``, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:  # plain open: the file gets the usual umask permissions
            img.save(fh, format="JPEG", quality=quality)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
