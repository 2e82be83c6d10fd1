"""The context a scene is drawn in (size, labels, horizon, sky and water colours) and the
palettes that several parts of the scene share."""

from __future__ import annotations

from dataclasses import dataclass

from lizaalert_tagger.scenes.plan import AUTUMN, DUSK, NIGHT, SPRING, SUMMER


@dataclass
class Ctx:
    w: int
    h: int
    time: int
    season: int
    terrain: int
    framing: str
    horizon_px: int | None
    sky_horizon: tuple[float, float, float]
    water: tuple[int, int, int]

    @property
    def lights_on(self) -> bool:
        return self.time in (NIGHT, DUSK)

    @property
    def short(self) -> int:
        return min(self.w, self.h)


SNOW = (236, 240, 247)
FOLIAGE = {
    SPRING: [(150, 205, 85), (170, 215, 100), (130, 190, 75)],
    SUMMER: [(40, 105, 38), (52, 120, 45), (30, 88, 32)],
    AUTUMN: [(215, 130, 35), (235, 190, 45), (190, 75, 30), (200, 160, 50)],
}
CONIFER = [(24, 66, 36), (30, 78, 42), (20, 56, 34)]
