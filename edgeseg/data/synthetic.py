"""`synthetic[:N]`: procedural road scenes in CamVid's 11 classes, so that everything runs without data.

A newcomer with no dataset can train a small model in minutes, calibrate a quantized engine and stream a
video; the tests use it too. Each image is a street seen from a car's camera: a perspective road with
lane markings between kerbed sidewalks, buildings with windows, trees, poles with signs, fences, cars,
pedestrians and bicyclists, placed in a metric world and painted back to front, with the label map
drawn from the same shapes (see `_synthetic_draw`). Lighting, colour cast, haze, shadows, blur, sensor
noise and JPEG softness vary as they do between real drives. It approximates CamVid's layout and class
frequencies, not its appearance: a model trained on it learns where roads, sky and cars are, and is a
working starting point, not a substitute for real data.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edgeseg.data._synthetic_draw import (
    BUILDING,
    DRAW,
    NEAR,
    SIDEWALK,
    SKY,
    TREE,
    Canvas,
    Look,
    Thing,
    bgr,
    draw_ground,
    finish,
    radius2,
    shade,
)
from edgeseg.data.base import Sample, SegDataset
from edgeseg.data.camvid import CAMVID_INFO
from edgeseg.errors import BadInputError

SYNTHETIC_INFO = replace(CAMVID_INFO, name="synthetic")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_VIDEO_CODE = 1000
_FPS = 30.0  # the simulated time step of `road_video`, whatever rate the file is written at

_FACADES = ((150, 180, 200), (60, 75, 140), (140, 140, 140), (200, 205, 210), (60, 80, 110), (140, 200, 220),
            (85, 85, 90), (190, 170, 150), (100, 120, 160), (170, 190, 180))
_CAR_COLORS = ((230, 230, 230), (30, 30, 32), (170, 170, 165), (110, 110, 112), (40, 40, 180), (140, 70, 30),
               (90, 40, 20), (50, 90, 40), (40, 190, 220), (150, 180, 200), (30, 100, 200))
_CLOTHES = ((30, 30, 30), (200, 200, 200), (40, 40, 170), (150, 80, 30), (60, 120, 60), (50, 160, 220),
            (120, 60, 120), (90, 90, 90), (40, 60, 100), (180, 150, 100))
_LEGS = ((120, 70, 40), (30, 30, 30), (90, 90, 95), (110, 150, 170), (60, 50, 40))
_SKIN = ((130, 160, 210), (100, 135, 185), (70, 95, 140), (45, 60, 90))
_HAIR = ((20, 20, 25), (30, 50, 80), (90, 160, 200), (160, 160, 160))
_SIGNS = {"circle": (((40, 40, 200), (235, 235, 235)), ((170, 90, 30), (180, 110, 50))),
          "rect": (((235, 235, 235), (160, 80, 20)), ((235, 235, 235), (60, 130, 40)), ((30, 30, 30), (40, 200, 230))),
          "triangle": (((40, 40, 200), (235, 235, 235)),), "diamond": (((30, 30, 30), (40, 200, 230)),)}


def _color(rng: np.random.Generator, base, spread: float = 15.0) -> tuple[int, int, int]:
    """`base` (BGR) with each channel moved by up to +-spread."""
    return tuple(min(255, max(0, int(b + spread * (2 * u - 1)))) for b, u in zip(base, rng.random(3).tolist()))


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _look(rng: np.random.Generator, h: int, w: int, time: str, horizon: float, haze_color, still: bool) -> Look:
    """Draw the light and the camera: brightness, colour cast, gamma, vignetting, haze, blur, noise, JPEG."""
    gain = {"day": 1.0, "bright": 1.15, "overcast": 0.9, "dusk": rng.uniform(0.5, 0.75)}[time] * rng.uniform(0.9, 1.1)
    cast = 1 + rng.normal(0, 0.05, 3)
    if time == "dusk":
        cast *= (0.85, 1.0, 1.12)
    gamma = rng.uniform(0.85, 1.2)
    x = np.arange(256, dtype=np.float64)[:, None] / 255
    lut = np.clip(255 * np.clip(x * gain * cast, 0, 1) ** gamma, 0, 255).astype(np.uint8)[None]
    sh, sw = max(h // 4, 2), max(w // 4, 2)  # slowly varying factors are made at a quarter of the size
    field = 1 - rng.uniform(0, 0.09) * radius2(sh, sw)
    field *= 1 + rng.uniform(0.02, 0.08) * cv2.resize(rng.standard_normal((6, 8)).astype(np.float32), (sw, sh))
    if still:  # a mottled texture pinned to the screen would look like a dirty lens in a moving video
        small = rng.standard_normal((max(h // 8, 2), max(w // 8, 2))).astype(np.float32)
        field *= 1 + rng.uniform(0.01, 0.05) * cv2.resize(small, (sw, sh))
    alpha = rng.uniform(0, 0.35) * np.exp(-(((np.arange(h) - horizon) / (0.12 * h)) ** 2)).astype(np.float32)
    field = cv2.resize(field, (w, h)) * (1 - alpha)[:, None]
    haze = (alpha[:, None, None] * np.asarray(haze_color, np.float32)[None, None]).astype(np.float32)
    blur = None
    u = rng.random()
    if u < 0.3:
        blur = ("gauss", rng.uniform(0.5, 1.4))
    elif u < 0.5:
        k = int(rng.integers(3, 9))
        kernel = np.zeros((k, k), np.float32)
        a = rng.normal(0, 0.25)
        c = (k - 1) / 2
        cv2.line(kernel, (round(c - c * math.cos(a)), round(c - c * math.sin(a))),
                 (round(c + c * math.cos(a)), round(c + c * math.sin(a))), 1.0, 1)
        blur = ("motion", kernel / kernel.sum())
    jpeg = int(rng.integers(40, 93)) if rng.random() < 0.4 else 0
    return Look(lut, field.astype(np.float32), haze, blur, int(rng.integers(2, 10)), jpeg)


@dataclass
class _Scene:
    """One street's layout and look: what `_render` paints for any time t of the drive."""

    h: int
    w: int
    f: float
    horizon: float
    vx: float
    cam_h: float
    side_light: tuple[float, float]
    sky: tuple
    skyline: list
    ground: dict
    things: list
    look: Look
    speed: float = 0.0  # metres per second the camera drives forward


def _spots(rng: np.random.Generator, start: float, end: float, step: tuple[float, float]) -> list[float]:
    out, z = [], start
    while z < end:
        out.append(z)
        z += rng.uniform(*step)
    return out


def _scene(rng: np.random.Generator, h: int, w: int, travel: float = 0.0, speed: float = 0.0,
           still: bool = True) -> _Scene:
    """Lay out one street: camera, road, and every object within `travel` + 130 metres ahead."""
    urban = rng.random() < 0.55
    time = _pick(rng, ("day", "day", "bright", "overcast", "overcast", "dusk"))
    f, horizon = w * rng.uniform(0.72, 1.0), h * rng.uniform(0.38, 0.52)
    vx, cam_h = w * (0.5 + rng.uniform(-0.07, 0.07)), rng.uniform(1.25, 1.7)
    end, far = 130.0 + travel, 260.0 + travel
    lane, lanes = rng.uniform(2.9, 3.6), int(_pick(rng, (2, 2, 2, 3, 4)))
    oncoming = lanes // 2
    ego = int(rng.integers(oncoming, lanes))
    xl = -(ego + 0.5) * lane + rng.uniform(-0.4, 0.4)
    xr = xl + lanes * lane
    park = [rng.random() < (0.45 if urban else 0.2) for _ in range(2)]
    road = (xl - 2.3 * park[0], xr + 2.3 * park[1])
    walk = (rng.uniform(1.5, 4.0), rng.uniform(1.5, 4.0))
    setback = [rng.uniform(0, 1.5) if urban else rng.uniform(2, 7) for _ in range(2)]
    g = rng.uniform(60, 115)
    paving = _color(rng, (145, 150, 155) if rng.random() < 0.8 else (95, 105, 150), 25)
    white = shade((225, 228, 228), rng.uniform(0.8, 1.0))
    marks = []
    for k in range(1, lanes):
        yellow = k == oncoming and rng.random() < 0.25
        solid = k == oncoming and rng.random() < 0.3
        period = rng.uniform(8, 12)
        marks.append((xl + k * lane, 0.13, period if solid else rng.uniform(2, 4), period, rng.uniform(0, period),
                      (40, 180, 215) if yellow else white))
    if rng.random() < 0.5:
        marks += [(xl + 0.25, 0.12, 1, 1, 0, white), (xr - 0.25, 0.12, 1, 1, 0, white)]
    asphalt = bgr((g + rng.uniform(-6, 6), g, g + rng.uniform(-6, 6)))
    patches = [(x0, x0 + rng.uniform(0.5, 3), rng.uniform(0, end), rng.uniform(1, 8),
                shade(asphalt, rng.uniform(0.7, 1.2)))  # repaired or worn asphalt
               for x0 in rng.uniform(road[0], road[1] - 1, int(rng.integers(0, 4 + int(travel // 40))))]
    sunny = time in ("day", "bright") and rng.random() < 0.6
    sun_side = int(rng.choice([-1, 1]))
    face_x = (road[0] - walk[0] - setback[0], road[1] + walk[1] + setback[1])
    ground = {"terrain": paving if urban else _color(rng, (50, 120, 75), 20),  # paved (sidewalk) or grass (tree)
              "terrain_cls": SIDEWALK if urban else TREE, "road": road, "kerb": rng.uniform(0.1, 0.18), "walk": walk,
              "asphalt": asphalt, "paving": paving, "kerb_color": shade(paving, 1.15), "joint": rng.uniform(1.0, 2.5),
              "marks": marks, "white": white, "patches": patches,
              "crossing": rng.uniform(8, 40) if rng.random() < 0.15 else None,
              "sun_shadow": (sorted((face_x[(sun_side + 1) // 2], face_x[(sun_side + 1) // 2] - sun_side
                                     * rng.uniform(3, 12))) if sunny else None),
              "shadow_dark": rng.uniform(0.25, 0.45)}
    sky = {"day": ((rng.uniform(170, 215), rng.uniform(120, 150), rng.uniform(60, 100)), (235, 220, 200)),
           "bright": ((rng.uniform(190, 230), rng.uniform(140, 170), rng.uniform(70, 110)), (240, 230, 215)),
           "overcast": ((180, 178, 172), (222, 222, 218)), "dusk": ((140, 100, 90), (110, 165, 230))}[time]
    sky = (_color(rng, sky[0], 12), _color(rng, sky[1], 10))
    skyline = []
    for _ in range(int(rng.integers(6, 26))):  # far buildings (or a tree line) on the horizon, in screen units
        tree_line = not urban and rng.random() < 0.6
        col = (np.asarray(_color(rng, (60, 110, 70) if tree_line else _pick(rng, _FACADES), 20)) + sky[1]) / 2
        skyline.append((rng.uniform(-0.05, 1.0), rng.uniform(0.02, 0.12), rng.uniform(0.01, 0.11), bgr(col),
                        TREE if tree_line else BUILDING))
    light = (1.0, 0.7) if sun_side < 0 else (0.7, 1.0)
    things: list[Thing] = []
    for s, side in ((0, -1), (1, 1)):
        edge = road[s]
        z = rng.uniform(-30, 0)
        while z < far:  # buildings
            length = rng.uniform(8, 30) if urban else rng.uniform(8, 16)
            r = rng.random(10).tolist()
            if r[0] < (0.95 if urban else 0.7):
                floor, win_w = 2.8 + 0.8 * r[3], 0.8 + 0.8 * r[4]
                things.append(Thing("building", face_x[s] + side * r[1] * (1.5 if urban else 4), z, layer=0, p={
                    "side": side, "length": length, "depth": 8 + 12 * r[2],
                    "height": 6 + 20 * r[5] if urban else 4 + 5 * r[5], "floor": floor,
                    "win": (win_w, 1.0 + (floor - 2.0) * r[6], win_w + 0.5 + 2 * r[7]),
                    "color": _color(rng, _pick(rng, _FACADES)), "glass": _color(rng, (75, 60, 50), 15),
                    "glass_lit": _color(rng, (170, 160, 140), 30), "lit": rng.random(64) < 0.3 * r[8],
                    "shop": _color(rng, (60, 55, 50), 20) if urban and r[9] < 0.5 else None}))
            z += length + (0 if urban and rng.random() < 0.7 else rng.uniform(2, 12) if urban else rng.uniform(6, 25))
        outer = edge + side * walk[s]
        hedge = not urban and rng.random() < 0.4
        if rng.random() < (0.45 if urban else 0.85):  # trees
            for z in _spots(rng, rng.uniform(-5, 15), end, (8, 25) if urban else (6, 16)):
                yard = not urban and rng.random() < 0.5
                x = outer + side * rng.uniform(0.5, setback[s] - 0.3) if yard else outer - side * rng.uniform(0.5, 1.0)
                things.append(_tree(rng, x, z, 1 if yard else 3))
        if hedge or rng.random() < (0.35 if urban else 0.5):  # hedges or fences on the sidewalk's outer edge
            wood, color = rng.random() < 0.4, _color(rng, (50, 85, 120) if rng.random() < 0.5 else (70, 75, 70), 20)
            for z in _spots(rng, rng.uniform(-10, 10), end, (12, 50)):
                length = rng.uniform(6, 40)
                things.append(Thing("hedge", outer, z, layer=2, p={"depth": side * 0.8, "length": length,
                                                                    "height": rng.uniform(0.7, 1.5),
                                                                    "color": _color(rng, (45, 100, 55), 15)})
                              if hedge else Thing("fence", outer + side * 0.05, z, layer=2, p={
                                  "style": "panel" if wood else "rail", "color": color, "length": length,
                                  "height": rng.uniform(0.9, 1.8),
                                  "pitch": rng.uniform(0.12, 0.2) if wood else rng.uniform(0.12, 0.3)}))
        for z in _spots(rng, rng.uniform(0, 15), end, (12, 35)):  # poles, lights, signs, traffic lights
            things.append(_pole(rng, edge + side * rng.uniform(0.3, 0.7), z, side))
        if park[s]:
            for z in _spots(rng, rng.uniform(-5, 10), end, (5, 12)):
                if rng.random() < 0.7:
                    things.append(_car(rng, edge - side * 1.1, z, 0.0, away=side > 0))
        for z in rng.uniform(3, 60 + travel, rng.poisson((4.0 if urban else 2.0) * (1 + travel / 60))):
            things.append(_person(rng, outer - side * rng.uniform(0.3, walk[s] - 0.3), z, speed))
        for z in rng.uniform(4, 40 + travel, int(rng.random() < 0.4) * int(rng.integers(1, 4)) + int(travel // 50)):
            things.append(Thing("clutter", outer - side * rng.uniform(0.3, walk[s] * 0.5), z, layer=3, p={
                "w": rng.uniform(0.4, 1.2), "h": rng.uniform(0.4, 1.3), "d": rng.uniform(0.4, 1.0),
                "color": _color(rng, (100, 110, 120), 60)}))
    if rng.random() < 0.85:  # one pedestrian near enough to be seen in most images
        side = int(rng.integers(2))
        things.append(_person(rng, road[side] + (2 * side - 1) * rng.uniform(0.4, walk[side] - 0.3),
                              rng.uniform(5, 25), speed))
    for k in range(lanes):  # moving cars: with us on the right, oncoming on the left
        x, away = xl + (k + 0.5) * lane, k >= oncoming
        first = rng.uniform(12, 40) if k == ego else rng.uniform(6, 30) if away else rng.uniform(3, 20)
        for z in _spots(rng, first, end + (15 * travel / max(speed, 1) if not away else 0), (8, 45)):
            if rng.random() < 0.7:
                v = speed + rng.uniform(0.5, 3) if away else -rng.uniform(6, 13)
                things.append(_car(rng, x + rng.uniform(-0.3, 0.3), z, v if speed else 0.0, away))
    for _ in range(int(rng.random() < 0.6) * int(rng.integers(1, 3)) + int(travel // 60)):
        things.append(_bicyclist(rng, xl, xr, rng.uniform(5, 30 + travel), speed))
    if rng.random() < 0.15:
        things.append(_person(rng, rng.uniform(xl, xr), rng.uniform(6, 30), speed, crossing=True))
    look = _look(rng, h, w, time, horizon, sky[1], still)
    return _Scene(h, w, f, horizon, vx, cam_h, light, sky, skyline, ground, things, look, speed)


def _tree(rng: np.random.Generator, x: float, z: float, layer: int) -> Thing:
    cr, n = rng.uniform(1.4, 3.0), int(rng.integers(5, 10))
    base = np.asarray(_color(rng, (45, 110, 60), 20), float)
    geometry = rng.uniform(-0.6, 0.6, (n, 4)) * cr
    geometry[:, 2] *= 5 / 6
    geometry[:, 3] = rng.uniform(0.45, 0.75, n) * cr
    tones = np.clip(base * rng.uniform(0.75, 1.2, (n, 1)), 0, 255).astype(int).tolist()
    blobs = sorted(zip(*geometry.T.tolist(), map(tuple, tones)), key=lambda b: -b[2])
    angle, radius = rng.uniform(0, 2 * np.pi, 16), np.sqrt(rng.random(16)) * 0.65 * cr
    tones = np.clip(base * rng.uniform(0.6, 1.4, (16, 1)), 0, 255).astype(int).tolist()
    speckles = list(zip((radius * np.cos(angle)).tolist(), (radius * np.sin(angle)).tolist(),
                        rng.uniform(0.08, 0.25, 16).tolist(), map(tuple, tones)))
    trunk = rng.uniform(1.8, 3.5)
    return Thing("tree", x, z, layer=layer, p={"trunk_h": trunk, "trunk_r": rng.uniform(0.1, 0.2), "crown_r": cr,
                                               "crown_y": trunk + 0.8 * cr, "bark": _color(rng, (45, 60, 80), 12),
                                               "blobs": blobs, "speckles": speckles})


def _pole(rng: np.random.Generator, x: float, z: float, side: int) -> Thing:
    u = rng.random()
    kind = "light" if u < 0.35 else "sign" if u < 0.75 else "traffic" if u < 0.85 else "plain"
    height = {"light": rng.uniform(6, 9), "sign": rng.uniform(2.4, 3.5), "traffic": rng.uniform(3, 4),
              "plain": rng.uniform(3, 8)}[kind]
    sign = ("traffic" if kind == "traffic" else _pick(rng, tuple(_SIGNS)) if kind == "sign" or rng.random() < 0.25
            else None)
    size = rng.uniform(0.25, 0.45)
    return Thing("pole", x, z, layer=3, p={
        "side": side, "height": height, "r": rng.uniform(0.06, 0.12), "color": _color(rng, (110, 115, 110), 30),
        "arm": rng.uniform(1, 2.5) if kind == "light" else 0.0, "sign": sign, "sign_size": size, "lit": rng.integers(3),
        "sign_y": height - 0.5 if sign == "traffic" else height - size if kind == "sign" else rng.uniform(2.2, 3.0),
        "sign_dx": 0.0 if rng.random() < 0.6 else -side * size, "sign_colors": _pick(rng, _SIGNS.get(sign, ((0, 0),)))})


def _car(rng: np.random.Generator, x: float, z: float, v: float, away: bool) -> Thing:
    u = rng.random()
    big, van = u < 0.06, 0.06 <= u < 0.18
    insets = (rng.uniform(0.6, 1.0), rng.uniform(1.1, 1.5)) if not van else (0.3, 0.9)
    return Thing("car", x, z, v, layer=3, p={
        "width": 2.4 if big else rng.uniform(1.6, 1.9), "length": rng.uniform(8, 12) if big else rng.uniform(3.6, 4.8),
        "body_h": rng.uniform(2.8, 3.3) if big else rng.uniform(1.3, 1.6) if van else rng.uniform(0.95, 1.15),
        "cabin_h": 0.0 if big else rng.uniform(0.45, 0.6) if van else rng.uniform(0.4, 0.55),
        "cabin_z": insets if away else insets[::-1], "color": _color(rng, _pick(rng, _CAR_COLORS), 12),
        "glass": _color(rng, (60, 50, 45), 12), "lights": (40, 40, 190) if away else (210, 230, 235)})


def _person(rng: np.random.Generator, x: float, z: float, speed: float, crossing: bool = False) -> Thing:
    walking = crossing or rng.random() < 0.7
    theta = (rng.choice([-1, 1]) * np.pi / 2 if crossing else rng.choice([0, np.pi]) + rng.normal(0, 0.25)
             if walking else rng.uniform(-np.pi, np.pi))
    pace = rng.uniform(0.8, 1.6) if walking else 0.0
    v = 0.0 if crossing else pace * math.cos(theta)
    return Thing("person", x, z, v if speed else 0.0, layer=3, p={
        "h": rng.uniform(1.0, 1.35) if rng.random() < 0.1 else rng.uniform(1.55, 1.9), "theta": float(theta),
        "vx": pace * math.sin(theta) if crossing and speed else 0.0, "phase": rng.uniform(0, 2 * np.pi),
        "shirt": _color(rng, _pick(rng, _CLOTHES)), "legs": _color(rng, _pick(rng, _LEGS), 10),
        "skin": _color(rng, _pick(rng, _SKIN), 8), "hair": _color(rng, _pick(rng, _HAIR), 8)})


def _bicyclist(rng: np.random.Generator, xl: float, xr: float, z: float, speed: float) -> Thing:
    u, pace = rng.random(), rng.uniform(3.5, 6)
    if u < 0.15:
        theta, x, v = float(rng.choice([-1, 1]) * np.pi / 2), rng.uniform(xl, xr), 0.0
    elif u < 0.4:
        theta, x, v = np.pi + rng.normal(0, 0.1), xl + rng.uniform(0.5, 1.2), -pace
    else:
        theta, x, v = rng.normal(0, 0.1), xr - rng.uniform(0.5, 1.2), pace
    return Thing("bicyclist", x, z, v if speed else 0.0, layer=3, p={
        "theta": theta, "vx": pace * math.sin(theta) if speed and u < 0.15 else 0.0, "phase": rng.uniform(0, 6.3),
        "frame": _color(rng, _pick(rng, _CAR_COLORS), 20), "shirt": _color(rng, _pick(rng, _CLOTHES)),
        "legs": _color(rng, _pick(rng, _LEGS), 10), "helmet": _color(rng, _pick(rng, _CLOTHES), 20)})


def _render(sc: _Scene, t: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image and label of the street at time t: sky, skyline, ground, then objects back to front."""
    cv = _paint(sc, t)
    return finish(cv, sc.look, rng), cv.label


INSTANCE_KINDS = ("car", "person", "bicyclist")  # the countable things; the rest is stuff


def _paint(sc: _Scene, t: float, instances: bool = False) -> Canvas:
    """The canvas of the street at time t before the camera's look is applied. With `instances`, its
    instance map holds k + 1 where thing sc.things[k] (one of INSTANCE_KINDS) is visible, else 0."""
    cam_z = sc.speed * t
    cv = Canvas(sc.h, sc.w, sc.f, sc.horizon, sc.vx, sc.cam_h, sc.side_light, instances=instances)
    a = np.clip(np.arange(sc.h, dtype=np.float32) / max(sc.horizon, 1.0), 0, 1)[:, None] ** 0.7
    cv.image[:] = (np.asarray(sc.sky[0], np.float32) * (1 - a) + np.asarray(sc.sky[1], np.float32) * a).astype(
        np.uint8)[:, None]
    cv.label[:] = SKY
    for u, width, height, color, cls in sc.skyline:
        top = sc.horizon - height * sc.h
        cv.image[int(top):int(sc.horizon) + 1, int(u * sc.w):int((u + width) * sc.w) + 1] = color
        cv.label[int(top):int(sc.horizon) + 1, int(u * sc.w):int((u + width) * sc.w) + 1] = cls
    draw_ground(cv, sc.ground, cam_z)
    visible = []
    for k, o in enumerate(sc.things):
        z = o.z + o.v * t - cam_z
        if z < (250 if o.kind == "building" else 120) and z + (o.p.get("length", 3.0)) > NEAR:
            visible.append((o.layer, -z, k, o, z))
    for _, _, k, o, z in sorted(visible, key=lambda item: item[:3]):
        cv.instance_id = k + 1 if o.kind in INSTANCE_KINDS else 0
        DRAW[o.kind](cv, o, z, t)
    return cv


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise BadInputError(f"synthetic image size {size!r} is not a (height, width) pair",
                            "pass size=(H, W), e.g. (360, 480)") from None
    if h < 64 or w < 64:
        raise BadInputError(f"synthetic image size {h}x{w} (HxW) is smaller than 64x64",
                            "pass size=(H, W) with both at least 64, e.g. (360, 480)")
    return h, w


class SyntheticRoadScenes(SegDataset):
    """`count` procedural road scenes of one split; sample i is generated on access, always the same."""

    info = SYNTHETIC_INFO

    def __init__(self, count: int = 200, split: str = "train", size: tuple[int, int] = (360, 480),
                 seed: int = 0) -> None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise BadInputError(f"synthetic image count {count!r} is not a positive integer",
                                "ask for at least one image, e.g. synthetic[:200]")
        if split not in SPLIT_CODES:
            raise BadInputError(f"unknown synthetic split '{split}'", f"use one of {', '.join(SPLIT_CODES)}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise BadInputError(f"synthetic seed {seed!r} is not a non-negative integer", "pass seed=0 or another")
        self.count, self.split, self.size, self.seed = int(count), split, _check_size(size), int(seed)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        if not -self.count <= index < self.count:
            raise IndexError(f"synthetic {self.split} index {index} out of range for {self.count} images")
        index %= self.count
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        image, label = _render(_scene(rng, *self.size), 0.0, rng)
        return Sample(image, label, f"synthetic_{self.split}_{index:05d}")

    def image_names(self) -> list[str]:
        return [f"synthetic_{self.split}_{i:05d}" for i in range(self.count)]


def road_video(frames: int, size: tuple[int, int] = (360, 480), seed: int = 0) -> Iterator[Sample]:
    """Frames (`Sample`s) of a drive down one synthetic street at 30 simulated frames per second: the camera
    moves forward, the layout persists and new objects come into view. The same arguments give the same
    frames; the street is laid out for the whole drive, so a longer video is a different street."""
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise BadInputError(f"frame count {frames!r} is not a positive integer", "ask for at least one frame")
    h, w = _check_size(size)
    rng = np.random.default_rng([int(seed), _VIDEO_CODE])
    speed = rng.uniform(6, 11)
    scene = _scene(rng, h, w, travel=speed * frames / _FPS, speed=speed, still=False)
    for k in range(int(frames)):
        image, label = _render(scene, k / _FPS, rng)
        yield Sample(image, label, f"synthetic_video{int(seed)}_{k:05d}")


def write_road_video(path, frames: int = 300, size: tuple[int, int] = (360, 480), fps: int = 30, seed: int = 0,
                     overwrite: bool = False) -> Path:
    """Write `road_video` to an .mp4 (mp4v) atomically; refuse to replace a file unless overwrite=True."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BadInputError(f"video {path} already exists", "pass overwrite=True or choose another path")
    from edgeseg.inputs import require_folder

    require_folder(path.parent, "folder", "create it or choose another path")  # names a file or FIFO as one
    h, w = _check_size(size)
    if not fps > 0:
        raise BadInputError(f"video frame rate {fps!r} is not positive", "pass fps=30 or another positive rate")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise BadInputError(f"OpenCV cannot write an mp4v video at {tmp}", "check the folder is writable")
    try:
        for sample in road_video(frames, (h, w), seed):
            writer.write(sample.image)
        writer.release()
        os.replace(tmp, path)
    finally:
        writer.release()
        if tmp.exists():
            tmp.unlink()
    return path
