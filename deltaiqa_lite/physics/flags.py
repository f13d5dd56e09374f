"""The flags of a slice and the physics result they are raised on."""

from __future__ import annotations

from dataclasses import dataclass, field

from deltaiqa_lite.physics.domain import V1_TRAINING_DOMAIN, TrainingDomain, _normal_body_part

# -- flags -----------------------------------------------------------------------
FLAG_SCORE_NOISE_DISAGREE = "score-noise-disagree"
FLAG_BODY_TRUNCATED = "body-truncated"
FLAG_OUTSIDE_TRAINING = "outside-training"
DISAGREE_THRESHOLD = 1.0


@dataclass
class PhysicsResult:
    """Everything physics says about one slice (the ``SliceResult`` fields of the same names)."""

    noise_hu: float | None = None
    water_equivalent_diameter_mm: float | None = None
    ctdivol_mgy: float | None = None
    ssde_mgy: float | None = None
    noise_score: float | None = None
    flags: list[str] = field(default_factory=list)
    physics_note: str | None = None


#: The physics keys of a result, the same in every output format and in SliceResult.
PHYSICS_FIELDS = ("noise_hu", "water_equivalent_diameter_mm", "ctdivol_mgy", "ssde_mgy", "noise_score",
                  "flags", "physics_note")
#: Flag codes of a slice joined in one text field (CSV, QA log); codes never contain it.
FLAG_SEPARATOR = ";"


# ----------------------------------------------------------------- flags and the whole slice

def physics_flags(result: PhysicsResult, score: float | None, *, truncated: bool = False,
                  body_part: str | None = None, phantom_16cm: bool = False,
                  field_of_view_mm: float | None = None,
                  domain: TrainingDomain | None = None) -> list[str]:
    """The flag codes of one slice (see ``docs/physics.md`` for their meanings).

    ``outside-training``: the slice is not what the model was trained on
    (``domain``, the model card's; None is :data:`V1_TRAINING_DOMAIN`): a 16 cm
    CTDI phantom when the domain has no head, a body part given and not in the
    domain's, or Dw or the field of view outside the domain's ranges.
    """
    domain = V1_TRAINING_DOMAIN if domain is None else domain
    flags: list[str] = []
    if score is not None and result.noise_score is not None \
            and abs(score - result.noise_score) > DISAGREE_THRESHOLD:
        flags.append(FLAG_SCORE_NOISE_DISAGREE)
    if truncated:
        flags.append(FLAG_BODY_TRUNCATED)
    part = _normal_body_part(body_part)
    dw = result.water_equivalent_diameter_mm
    dw_range, fov_range = domain.water_equivalent_diameter_mm, domain.field_of_view_mm
    outside = ((phantom_16cm and not domain.head) or (part and part not in domain.body_parts)
               or (dw is not None and not dw_range[0] <= dw <= dw_range[1])
               or (field_of_view_mm is not None and not fov_range[0] <= field_of_view_mm <= fov_range[1]))
    if outside:
        flags.append(FLAG_OUTSIDE_TRAINING)
    return flags
