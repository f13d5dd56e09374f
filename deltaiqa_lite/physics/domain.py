"""Training domain: what a model was trained on, as the ``outside-training`` flag checks it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from deltaiqa_lite.errors import ModelError

# Body parts whose CTDIvol refers to the 16 cm phantom when (0018,9346) is absent. Neck
# is left out: scanners differ (many use the 32 cm phantom there).
HEAD_BODY_PARTS = {"HEAD", "BRAIN", "SKULL", "IAC", "ORBIT", "SINUS", "EAR"}

# The v1 training domain: what models trained on simulator v1 saw (convert/sim/simulate.py
# make_phantom): abdominal slices, lateral width 250-420 mm at AP/lateral 0.62-0.82, i.e.
# an equal-area diameter of 197-380 mm, Dw 199-380 mm over the 300 phantoms of a
# 1,200-slice set; fields of view 320-450 mm. Margins of about 10 mm on both (a build
# test, tests/convert/test_domain.py, keeps them around what v1 draws). Used for models
# whose card carries no training.domain (models built before it was recorded, site
# models); newer cards carry their own (convert/card/domain.py), see TrainingDomain.
TRAINING_DW_MM = (180.0, 390.0)
TRAINING_FOV_MM = (300.0, 470.0)
TRAINING_BODY_PARTS = {"ABDOMEN", "PELVIS", "ABDOMENPELVIS", "ABDOMEN_PELVIS", "CHESTABDOMEN",
                       "CHESTABDOMENPELVIS", "CHEST_ABDOMEN_PELVIS", "LIVER", "KIDNEY", "PANCREAS",
                       "TRUNK", "BODY", "WHOLEBODY"}


@dataclass(frozen=True)
class TrainingDomain:
    """What a model was trained on, as the ``outside-training`` flag checks it.

    ``body_parts``: (0018,0015) Body Part Examined values inside (upper case, no
    spaces); ``water_equivalent_diameter_mm`` and ``field_of_view_mm``: closed
    (low, high) ranges; ``head``: head slices were trained on, so a 16 cm CTDI
    phantom alone does not make a slice outside; ``source``: where it came from.
    """

    body_parts: frozenset[str]
    water_equivalent_diameter_mm: tuple[float, float]
    field_of_view_mm: tuple[float, float]
    head: bool = False
    source: str = ""

    @classmethod
    def from_card(cls, card: dict, source: str = "model card") -> TrainingDomain:
        """The card's ``training.domain``, or :data:`V1_TRAINING_DOMAIN` when it has none.

        Raises
        ------
        ModelError
            ``training.domain`` is present but malformed (``source`` names the model).
        """
        training = card.get("training")
        domain = training.get("domain") if isinstance(training, dict) else None
        if domain is None:
            return V1_TRAINING_DOMAIN
        where = f"{source}: model card training.domain"
        if not isinstance(domain, dict):
            raise ModelError(f"{where} is {domain!r}; expected a JSON object")
        parts = domain.get("body_parts")
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise ModelError(f"{where}.body_parts is {parts!r}; expected a list of Body Part Examined values")
        head = domain.get("head")
        if not isinstance(head, bool):
            raise ModelError(f"{where}.head is {head!r}; expected true or false")
        return cls(frozenset(_normal_body_part(p) for p in parts),
                   _card_range(domain, "water_equivalent_diameter_mm", where),
                   _card_range(domain, "field_of_view_mm", where), head,
                   str(domain.get("source", "model card")))


def _card_range(domain: dict, key: str, where: str) -> tuple[float, float]:
    value = domain.get(key)
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in value) and value[0] <= value[1]):
        return float(value[0]), float(value[1])
    raise ModelError(f"{where}.{key} is {value!r}; expected [low, high] in mm with low <= high")


def _normal_body_part(body_part: str | None) -> str:
    return "".join(str(body_part or "").upper().split())


#: The domain of models trained on simulator v1, for cards without ``training.domain``.
V1_TRAINING_DOMAIN = TrainingDomain(frozenset(TRAINING_BODY_PARTS), TRAINING_DW_MM, TRAINING_FOV_MM,
                                    head=False, source="v1 fallback: deltaiqa_lite.physics TRAINING_* "
                                                       "(simulator v1, abdomen only)")
