"""Drawing for `edgeseg.data.synthetic`: a pinhole camera over a flat street, painting image and label at once.

World coordinates are metres: x to the right of the camera, y up from the road, z forward. Every shape is
drawn with cv2 on the BGR image and, with its class id, on the label map, back to front, so the labels
show exactly what is visible. Shapes drawn with class None change only the image (texture, lights).
A canvas made with `instances=True` also keeps an instance-id map: every shape that sets a class also
sets `instance_id` (0 for stuff), so a nearer tree or pole cuts the car behind it as it cuts its label.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

NEAR = 0.4  # metres: nothing nearer than this is drawn
FAR = 400.0  # metres: where the road ends (a pixel or two under the horizon)
SHIFT = 3  # sub-pixel bits of cv2 coordinates, so that slow motion in videos stays smooth
_ONE = 1 << SHIFT
SKY, BUILDING, POLE, ROAD, SIDEWALK, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST, VOID = range(12)


def bgr(color) -> tuple[int, int, int]:
    """A colour as the tuple of Python ints cv2 wants, clipped to 0..255."""
    return tuple(int(min(255.0, max(0.0, c))) for c in color)


def shade(color, factor: float) -> tuple[int, int, int]:
    return tuple(min(255, int(c * factor)) for c in color)


@dataclass
class Thing:
    """One object of the world: where it stands at time 0, how fast it moves along z, how it looks."""

    kind: str
    x: float
    z: float
    v: float = 0.0
    layer: int = 2  # 0 buildings, 1 behind the sidewalk's edge, 2 fences and hedges, 3 on the sidewalk or road
    p: dict = field(default_factory=dict)


class Canvas:
    """An image and its label map seen by a camera cam_h above the road, focal length f pixels."""

    def __init__(self, h: int, w: int, f: float, horizon: float, vx: float, cam_h: float,
                 side_light: tuple[float, float] = (0.8, 0.8), instances: bool = False) -> None:
        self.h, self.w, self.f, self.hy, self.vx, self.cam_h = h, w, f, horizon, vx, cam_h
        self.side_light = side_light  # brightness of faces that look left (+x normal is 'left-facing') / right
        self.image = np.empty((h, w, 3), np.uint8)
        self.label = np.empty((h, w), np.uint8)
        self.shadow: np.ndarray | None = None  # float32 brightness factor, made on the first shadow
        self.instance = np.zeros((h, w), np.int32) if instances else None  # id painted with each class
        self.instance_id = 0  # set by the painter before each object: 0 for stuff, an id for a countable thing

    def _mark(self, paint, cls: int | None) -> None:
        """Paint the label map (and the instance map, if kept) with the same cv2 call `paint(target, value)`."""
        if cls is not None:
            paint(self.label, cls)
            if self.instance is not None:
                paint(self.instance, self.instance_id)

    def project(self, pts) -> np.ndarray:
        """Pixel coordinates (... x 2, float) of world points (... x 3)."""
        pts = np.asarray(pts, np.float64)
        z = np.maximum(pts[..., 2], NEAR)
        return np.stack([self.vx + self.f * pts[..., 0] / z, self.hy + self.f * (self.cam_h - pts[..., 1]) / z], -1)

    def _fixed(self, pts) -> np.ndarray:
        """cv2's fixed-point pixel coordinates (k x 2 int32) of a few world points, without numpy's overhead."""
        f, vx, hy, ch = self.f * _ONE, self.vx * _ONE, self.hy * _ONE, self.cam_h
        out = []
        for x, y, z in pts:
            s = f / (z if z > NEAR else NEAR)
            out.append((int(vx + s * x), int(hy + s * (ch - y))))
        return np.array(out, np.int32)

    def px(self, metres: float, z: float) -> float:
        return self.f * metres / max(z, NEAR)

    def poly(self, pts, color, cls: int | None) -> None:
        """Fill one convex polygon given by a few world points."""
        p = self._fixed(pts)
        cv2.fillConvexPoly(self.image, p, color, cv2.LINE_8, SHIFT)
        self._mark(lambda target, value: cv2.fillConvexPoly(target, p, value, cv2.LINE_8, SHIFT), cls)

    def polys(self, pts: np.ndarray, color, cls: int | None) -> None:
        """Fill many polygons given by world points (n x k x 3) with one colour."""
        if len(pts) == 0:
            return
        p = list(np.rint(self.project(pts) * _ONE).astype(np.int32))
        cv2.fillPoly(self.image, p, color, cv2.LINE_8, SHIFT)
        self._mark(lambda target, value: cv2.fillPoly(target, p, value, cv2.LINE_8, SHIFT), cls)

    def line(self, a, b, radius: float, color, cls: int | None) -> None:
        """A capsule of `radius` metres between world points a and b."""
        (ua, va), (ub, vb) = self._fixed((a, b)).tolist()
        t = int(min(2000, max(1, round(2 * self.px(radius, 0.5 * (a[2] + b[2]))))))
        cv2.line(self.image, (ua, va), (ub, vb), color, t, cv2.LINE_8, SHIFT)
        self._mark(lambda target, value: cv2.line(target, (ua, va), (ub, vb), value, t, cv2.LINE_8, SHIFT), cls)

    def ellipse(self, c, rx: float, ry: float, color, cls: int | None, thickness: float = 0.0) -> None:
        """An upright ellipse (radii in metres) in the plane facing the camera; thickness in metres, 0 fills."""
        z = max(c[2], NEAR)
        s = self.f * _ONE / z
        centre = (int(self.vx * _ONE + s * c[0]), int(self.hy * _ONE + s * (self.cam_h - c[1])))
        axes = (max(_ONE, int(s * rx)), max(_ONE, int(s * ry)))
        t = -1 if thickness <= 0 else max(1, round(s * thickness / _ONE))
        cv2.ellipse(self.image, centre, axes, 0, 0, 360, color, t, cv2.LINE_8, SHIFT)
        self._mark(lambda target, value: cv2.ellipse(target, centre, axes, 0, 0, 360, value, t, cv2.LINE_8, SHIFT), cls)

    def disc(self, c, r: float, color, cls: int | None) -> None:
        self.ellipse(c, r, r, color, cls)

    def cast_shadow(self, pts, darkness: float) -> None:
        """Darken the region of a ground polygon (image only; applied when the image is finished)."""
        if self.shadow is None:
            self.shadow = np.ones((self.h, self.w), np.float32)
        cv2.fillConvexPoly(self.shadow, self._fixed(pts), float(1 - darkness), cv2.LINE_8, SHIFT)


@dataclass
class Look:
    """What the camera and the light do to the image: fixed over a video, drawn anew for each image."""

    lut: np.ndarray  # 1 x 256 x 3 uint8: brightness, colour cast, gamma
    field: np.ndarray  # H x W float32 brightness factor: vignetting, uneven light, haze's share
    haze: np.ndarray  # H x 1 x 3 float32 added after the factor
    blur: tuple | None
    noise: int
    jpeg: int


@functools.lru_cache(maxsize=4)
def radius2(h: int, w: int) -> np.ndarray:
    """Squared distance from the image centre, 1 at the middle of each edge (for vignetting)."""
    y = ((np.arange(h, dtype=np.float32) - h / 2) / (h / 2)) ** 2
    x = ((np.arange(w, dtype=np.float32) - w / 2) / (w / 2)) ** 2
    return y[:, None] + x[None, :]


@functools.lru_cache(maxsize=4)
def _noise_tile(h: int, w: int) -> np.ndarray:
    """Sensor noise (uniform, -1..1) a little larger than the image; each image adds a shifted window of it."""
    return np.random.default_rng(20240601).uniform(-1, 1, (h + 64, w + 64, 3)).astype(np.float32)


def finish(cv: Canvas, look: Look, rng: np.random.Generator) -> np.ndarray:
    """The photograph of what was painted: light, blur, sensor noise and JPEG, as `look` says."""
    f = cv2.LUT(cv.image, look.lut).astype(np.float32)
    f *= (look.field if cv.shadow is None else look.field * cv.shadow)[..., None]
    f += look.haze
    if look.blur is not None:
        f = cv2.GaussianBlur(f, (0, 0), look.blur[1]) if look.blur[0] == "gauss" else cv2.filter2D(f, -1, look.blur[1])
    tile = _noise_tile(cv.h, cv.w)
    oy, ox = rng.integers(0, 64, 2)
    f += tile[oy:oy + cv.h, ox:ox + cv.w] * np.float32(look.noise)
    image = np.clip(f, 0, 255).astype(np.uint8)
    if look.jpeg:
        image = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, look.jpeg])[1], cv2.IMREAD_COLOR)
    return image


def box(cv: Canvas, x0, x1, y0, y1, z0, z1, color, cls, near=None, side=None, top=None) -> None:
    """The faces of an axis-aligned box that the camera sees (they never overlap, so any order is right)."""
    if z1 <= NEAR:
        return
    z0 = max(z0, NEAR)
    if y1 < cv.cam_h:
        cv.poly([(x0, y1, z0), (x1, y1, z0), (x1, y1, z1), (x0, y1, z1)], shade(color, 1.12) if top is None else top,
                cls)
    if y0 > cv.cam_h:
        cv.poly([(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)], shade(color, 0.6), cls)
    if x0 > 0:
        cv.poly([(x0, y0, z0), (x0, y1, z0), (x0, y1, z1), (x0, y0, z1)],
                shade(color, cv.side_light[1]) if side is None else side, cls)
    if x1 < 0:
        cv.poly([(x1, y0, z0), (x1, y1, z0), (x1, y1, z1), (x1, y0, z1)],
                shade(color, cv.side_light[0]) if side is None else side, cls)
    cv.poly([(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)], color if near is None else near, cls)


def quads(*corners) -> np.ndarray:
    """n x 4 x 3 world polygons from four (x, y, z) corners whose entries are numbers or length-n arrays."""
    return np.stack([np.stack(np.broadcast_arrays(*(np.asarray(v, np.float64) for v in c)), -1) for c in corners], 1)


def wall_grid(p0, along, length, height, win, pitch, sill) -> np.ndarray:
    """Corners (n x 4 x 3) of a grid of windows on a vertical wall from world point p0 along unit vector `along`."""
    nw, nf = int((length - 0.4) // pitch[0]), int((height - sill - 0.6) // pitch[1])
    if nw <= 0 or nf <= 0:
        return np.zeros((0, 4, 3))
    s = (length - nw * pitch[0] + pitch[0] - win[0]) / 2 + np.arange(nw) * pitch[0]
    s, y = (a.ravel() for a in np.meshgrid(s, sill + np.arange(nf) * pitch[1]))
    ds = np.array([0, win[0], win[0], 0])
    dy = np.array([0, 0, win[1], win[1]])
    ss, yy = s[:, None] + ds, y[:, None] + dy
    return np.asarray(p0)[None, None] + ss[..., None] * np.asarray(along)[None, None] + yy[..., None] * [0, 1, 0]


def draw_building(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    z1 = z + p["length"]
    if z1 <= NEAR:
        return
    xin, xout = o.x, o.x + p["side"] * p["depth"]
    box(cv, min(xin, xout), max(xin, xout), 0, p["height"], z, z1, p["color"], BUILDING)
    if z > 150:
        return
    xf = xin - p["side"] * 0.02
    sill = p["floor"] * 0.35
    if p["shop"]:
        cv.poly([(xf, 0.3, max(z, NEAR)), (xf, 2.8, max(z, NEAR)), (xf, 2.8, z1), (xf, 0.3, z1)], p["shop"], None)
        sill += p["floor"]
    win, pitch = (p["win"][0], p["win"][1]), (p["win"][2], p["floor"])
    grids = [wall_grid((xf, 0, z), (0, 0, 1), p["length"], p["height"], win, pitch, sill)]
    if z > NEAR + 0.1 and cv.px(p["depth"], z) > 8:  # the end wall (facing the camera) is wide enough for windows
        grids.append(wall_grid((xin, 0, z - 0.02), (p["side"], 0, 0), p["depth"], p["height"], win, pitch, sill))
    corners = np.concatenate(grids) if len(grids) > 1 else grids[0]
    lit = np.resize(p["lit"], len(corners))
    keep = (corners[..., 2].min(1) > NEAR + 0.05) & (corners[..., 2].min(1) < 120)
    cv.polys(corners[keep & ~lit], p["glass"], None)
    cv.polys(corners[keep & lit], p["glass_lit"], None)


def draw_tree(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    r = p["trunk_r"]
    box(cv, o.x - r, o.x + r, 0, p["trunk_h"] + 0.5, z - r, z + r, p["bark"], TREE)
    for dx, dy, dz, rad, col in p["blobs"]:
        if z + dz > NEAR:
            cv.disc((o.x + dx, p["crown_y"] + dy, z + dz), rad, col, TREE)
    if z < 40:
        for dx, dy, rad, col in p["speckles"]:
            cv.disc((o.x + dx, p["crown_y"] + dy, z), rad, col, None)


def draw_hedge(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    box(cv, min(o.x, o.x + p["depth"]), max(o.x, o.x + p["depth"]), 0, p["height"], z, z + p["length"],
        p["color"], TREE)


def draw_fence(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    x, h, z1 = o.x, p["height"], z + p["length"]
    if z1 <= NEAR:
        return
    za = max(z, NEAR)
    ks = z + np.arange(0, p["length"], p["pitch"])
    if p["style"] == "panel":  # boards, their gaps drawn darker
        cv.poly([(x, 0, za), (x, h, za), (x, h, z1), (x, 0, z1)], p["color"], FENCE)
        ks = ks[(ks > NEAR) & (ks < 40)]
        gaps = quads((x, 0.05, ks), (x, h, ks), (x, h, ks + 0.03), (x, 0.05, ks + 0.03))
        cv.polys(gaps, shade(p["color"], 0.7), None)
        return
    for y0, y1 in ((h - 0.07, h), (0.15, 0.22)):  # a railing: two rails and bars
        cv.poly([(x, y0, za), (x, y1, za), (x, y1, z1), (x, y0, z1)], p["color"], FENCE)
    ks = ks[ks > NEAR]
    cv.polys(quads((x, 0, ks), (x, h, ks), (x, h, ks + 0.05), (x, 0, ks + 0.05)), p["color"], FENCE)


_SIGN_SHAPES = {"rect": ((-1.2, -0.8), (1.2, -0.8), (1.2, 0.8), (-1.2, 0.8)),
                "triangle": ((-1.0, -0.75), (1.0, -0.75), (0.0, 1.0)), "diamond": ((0, -1), (1, 0), (0, 1), (-1, 0))}


def draw_pole(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    r, x = p["r"], o.x
    box(cv, x - r, x + r, 0, p["height"], z - r, z + r, p["color"], POLE)
    if p["arm"]:  # a street light's arm reaching over the road, and its lamp
        xa = x - p["side"] * p["arm"]
        box(cv, min(x, xa), max(x, xa), p["height"] - 0.12, p["height"], z - 0.05, z + 0.05, p["color"], POLE)
        box(cv, min(xa, xa + p["side"] * 0.5), max(xa, xa + p["side"] * 0.5), p["height"] - 0.25,
            p["height"] - 0.08, z - 0.15, z + 0.15, (200, 205, 210), POLE)
    kind = p["sign"]
    if not kind:
        return
    sx, sy, sz, s = x + p["sign_dx"], p["sign_y"], z - r - 0.03, p["sign_size"]
    if sz <= NEAR:
        return
    outer, inner = p["sign_colors"]
    if kind == "traffic":
        box(cv, sx - 0.17, sx + 0.17, sy - 0.5, sy + 0.5, sz - 0.2, sz, (30, 30, 30), SIGN)
        for k, col in enumerate(((40, 40, 220), (40, 170, 230), (80, 200, 60))):
            cv.disc((sx, sy + 0.3 - 0.3 * k, sz - 0.21), 0.1, col if k == p["lit"] else shade(col, 0.3), None)
        return
    if kind == "circle":
        cv.disc((sx, sy, sz), s, outer, SIGN)
        cv.disc((sx, sy, sz - 0.01), s * 0.72, inner, None)
        return
    for scale, color, cls, dz in ((s, outer, SIGN, 0.0), (0.75 * s, inner, None, 0.01)):  # the board, its border
        cv.poly([(sx + u * scale, sy + v * scale, sz - dz) for u, v in _SIGN_SHAPES[kind]], color, cls)


def draw_car(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    w, length, hb, hc = p["width"], p["length"], p["body_h"], p["cabin_h"]
    x0, x1, z1 = o.x - w / 2, o.x + w / 2, z + length
    if z1 <= NEAR:
        return
    col = p["color"]
    zs = max(z - 0.3, NEAR)  # the shadow under the near end (further back it would darken the body itself)
    cv.cast_shadow([(x0 - 0.1, 0, zs), (x1 + 0.1, 0, zs), (x1 + 0.1, 0, z + 1.2), (x0 - 0.1, 0, z + 1.2)], 0.45)
    small = cv.px(w, z) < 14  # far away: no details
    zw = max(z + 0.6, NEAR)
    if not small:
        for xa, xb in ((x0 + 0.05, x0 + 0.32), (x1 - 0.32, x1 - 0.05)):  # wheels under the near end
            cv.poly([(xa, 0, zw), (xb, 0, zw), (xb, 0.35, zw), (xa, 0.35, zw)], (22, 22, 22), CAR)
        cv.poly([(x0 + 0.3, 0.18, zw), (x1 - 0.3, 0.18, zw), (x1 - 0.3, 0.31, zw), (x0 + 0.3, 0.31, zw)],
                (30, 30, 30), CAR)
    box(cv, x0, x1, 0.1 if small else 0.3, hb, z, z1, col, CAR)
    if hc > 0:  # cabin: glass all round, roof in the body's colour
        ci0, ci1 = p["cabin_z"]
        box(cv, x0 + 0.08, x1 - 0.08, hb, hb + hc, z + ci0, z1 - ci1, p["glass"], CAR,
            side=p["glass"], top=shade(col, 1.05))
    else:  # a bus or truck: a band of windows on its side and at its near end
        xs = x0 if x0 > 0 else x1
        zs = max(z, NEAR)
        cv.poly([(xs, hb * 0.45, zs), (xs, hb * 0.8, zs), (xs, hb * 0.8, z1 - 0.5), (xs, hb * 0.45, z1 - 0.5)],
                p["glass"], None)
    if small:
        return
    if z > NEAR + 0.01:
        for xl in (x0 + 0.08, x1 - 0.3):  # lights
            cv.poly([(xl, hb * 0.72, z - 0.01), (xl + 0.22, hb * 0.72, z - 0.01), (xl + 0.22, hb * 0.86, z - 0.01),
                     (xl, hb * 0.86, z - 0.01)], p["lights"], None)
        cv.poly([(o.x - 0.26, hb * 0.45, z - 0.01), (o.x + 0.26, hb * 0.45, z - 0.01), (o.x + 0.26, hb * 0.58,
                 z - 0.01), (o.x - 0.26, hb * 0.58, z - 0.01)], (215, 225, 230), None)  # number plate
    xs = x0 if x0 > 0.3 else x1 if x1 < -0.3 else None
    if xs is not None:  # wheels on the side the camera sees, foreshortened
        for zw in (z + 0.8, z1 - 0.8):
            if zw - 0.35 > NEAR:
                rx = abs(xs) * zw * (1 / (zw - 0.34) - 1 / (zw + 0.34)) / 2
                cv.ellipse((xs, 0.34, zw), rx, 0.34, (20, 20, 20), CAR)
                cv.ellipse((xs, 0.34, zw), rx * 0.5, 0.17, (110, 110, 115), None)


def _limbs(o: Thing, z: float, t: float):
    """World-point maker for a figure at o (heading theta; lateral, forward, up offsets) and its gait phase."""
    p = o.p
    x = o.x + p.get("vx", 0.0) * t
    th = p["theta"]
    d, lat = (math.sin(th), math.cos(th)), (math.cos(th), -math.sin(th))

    def at(side: float, fwd: float, y: float):
        return (x + lat[0] * side + d[0] * fwd, y, z + lat[1] * side + d[1] * fwd)

    speed = abs(o.v) + abs(p.get("vx", 0.0))
    return at, math.sin(p["phase"] + speed * t * 4.0)


def draw_person(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    if z - 0.3 <= NEAR:
        return
    at, s = _limbs(o, z, t)
    k = p["h"] / 1.75
    hip, sho = 0.52 * p["h"], 0.8 * p["h"]
    for side in (-1, 1):
        cv.line(at(side * 0.09 * k, 0, hip), at(side * 0.1 * k, side * s * 0.3 * k, 0.06), 0.065 * k,
                p["legs"], PEDESTRIAN)
    cv.line(at(0, 0, hip + 0.06 * k), at(0, 0, sho - 0.06 * k), 0.17 * k, p["shirt"], PEDESTRIAN)
    for side in (-1, 1):
        cv.line(at(side * 0.2 * k, 0, sho - 0.03), at(side * 0.24 * k, -side * s * 0.22 * k, hip - 0.02), 0.045 * k,
                p["shirt"], PEDESTRIAN)
    head = at(0, 0, 0.93 * p["h"])
    facing_away = math.cos(p["theta"]) > 0.5
    cv.disc(head, 0.11 * k, p["hair"] if facing_away else p["skin"], PEDESTRIAN)
    if not facing_away:
        cv.ellipse((head[0], head[1] + 0.06 * k, head[2] - 0.01), 0.1 * k, 0.05 * k, p["hair"], PEDESTRIAN)


def draw_bicyclist(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    if z - 0.7 <= NEAR:
        return
    at, s = _limbs(o, z, t)
    wb, r = 1.05, 0.34
    rear, front = at(0, -wb / 2, r), at(0, wb / 2, r)
    squash = max(abs(math.sin(p["theta"])), 0.1)
    for c in sorted((rear, front), key=lambda q: -q[2]):
        cv.ellipse(c, r * squash, r, (25, 25, 25), BICYCLIST, thickness=0.06)
    crank, seat, head_tube, bars = at(0, 0, 0.32), at(0, -0.15, 0.92), at(0, wb / 2 - 0.12, 0.92), at(0, 0.4, 1.05)
    for a, b in ((rear, crank), (crank, seat), (seat, rear), (crank, head_tube), (seat, head_tube), (front, bars)):
        cv.line(a, b, 0.025, p["frame"], BICYCLIST)
    hip, shoulder = at(0, -0.12, 1.0), at(0, 0.22, 1.5)
    for side in (-1, 1):
        cv.line(at(side * 0.1, -0.12, 1.0), at(side * 0.12, side * s * 0.17, 0.32 + side * s * 0.12), 0.07,
                p["legs"], BICYCLIST)
    cv.line(hip, shoulder, 0.16, p["shirt"], BICYCLIST)
    for side in (-1, 1):
        cv.line(at(side * 0.18, 0.22, 1.47), at(side * 0.25, 0.4, 1.05), 0.045, p["shirt"], BICYCLIST)
    cv.disc(at(0, 0.3, 1.68), 0.12, p["helmet"], BICYCLIST)


def draw_clutter(cv: Canvas, o: Thing, z: float, t: float) -> None:
    p = o.p
    box(cv, o.x - p["w"] / 2, o.x + p["w"] / 2, 0, p["h"], z, z + p["d"], p["color"], VOID)


DRAW = {"building": draw_building, "tree": draw_tree, "hedge": draw_hedge, "fence": draw_fence, "pole": draw_pole,
        "car": draw_car, "person": draw_person, "bicyclist": draw_bicyclist, "clutter": draw_clutter}


def draw_ground(cv: Canvas, g: dict, cam_z: float) -> None:
    """Terrain, road, kerbs, sidewalks, lane markings and the shadow of the sunny side's buildings."""
    top = max(0, int(math.ceil(cv.hy)))
    cv.image[top:] = g["terrain"]
    cv.label[top:] = g["terrain_cls"]
    xl, xr, k = g["road"][0], g["road"][1], g["kerb"]
    cv.poly([(xl, 0, NEAR), (xr, 0, NEAR), (xr, 0, FAR), (xl, 0, FAR)], g["asphalt"], ROAD)
    for edge, width, sign in ((xl, g["walk"][0], -1), (xr, g["walk"][1], 1)):
        cv.poly([(edge, k, NEAR), (edge + sign * width, k, NEAR), (edge + sign * width, k, FAR), (edge, k, FAR)],
                g["paving"], SIDEWALK)
        cv.poly([(edge, 0, NEAR), (edge, k, NEAR), (edge, k, FAR), (edge, 0, FAR)], g["kerb_color"], SIDEWALK)
        zs = np.arange(math.ceil((cam_z + NEAR) / g["joint"]), (cam_z + 60) // g["joint"]) * g["joint"] - cam_z
        xo = edge + sign * width
        cv.polys(quads((edge, k, zs), (xo, k, zs), (xo, k, zs + 0.04), (edge, k, zs + 0.04)), shade(g["paving"], 0.8),
                 None)
    for x0, x1, z0, length, color in g["patches"]:
        if z0 + length - cam_z > NEAR:
            za = max(z0 - cam_z, NEAR)
            cv.poly([(x0, 0, za), (x1, 0, za), (x1, 0, z0 + length - cam_z), (x0, 0, z0 + length - cam_z)], color, ROAD)
    for x, width, dash, period, phase, color in g["marks"]:
        if dash >= period:
            cv.poly([(x - width / 2, 0, NEAR), (x + width / 2, 0, NEAR), (x + width / 2, 0, FAR),
                     (x - width / 2, 0, FAR)], color, ROAD)
            continue
        n = np.arange(math.floor((cam_z - dash - phase) / period), math.ceil((cam_z + 150 - phase) / period))
        z0 = n * period + phase - cam_z
        z0, z1 = np.maximum(z0, NEAR), z0 + dash
        keep = z1 > NEAR
        z0, z1, xa, xb = z0[keep], z1[keep], x - width / 2, x + width / 2
        cv.polys(quads((xa, 0, z0), (xb, 0, z0), (xb, 0, z1), (xa, 0, z1)), color, ROAD)
    if g["crossing"] is not None and g["crossing"] + 3 - cam_z > NEAR:
        za, zb = max(g["crossing"] - cam_z, NEAR), g["crossing"] + 3 - cam_z
        xs = np.arange(xl + 0.4, xr - 0.4, 1.0)
        cv.polys(quads((xs, 0, za), (xs + 0.5, 0, za), (xs + 0.5, 0, zb), (xs, 0, zb)), g["white"], ROAD)
    if g["sun_shadow"]:  # the sunny side's buildings shade a band of the street
        x0, x1 = g["sun_shadow"]
        cv.cast_shadow([(x0, 0, NEAR), (x1, 0, NEAR), (x1, 0, FAR), (x0, 0, FAR)], g["shadow_dark"])
