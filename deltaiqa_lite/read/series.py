"""Group slices (or their results) into series and put each series in order.

Series are keyed by Series Instance UID. Within a series the order is the
position along the slice normal (Image Position (Patient) projected on the
normal, carried as ``slice_location``) when every member has one, else
Instance Number (then frame), else the order the files were given in.
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence, TypeVar

__all__ = ["group_series", "order_series"]


class _Located(Protocol):
    series_uid: str | None
    slice_location: float | None
    instance_number: int | None
    frame: int | None


T = TypeVar("T", bound=_Located)


def order_series(members: Sequence[T]) -> list[T]:
    """Return the members of one series in anatomical order.

    Parameters
    ----------
    members : sequence
        Objects with ``slice_location``, ``instance_number`` and ``frame``
        (:class:`deltaiqa_lite.read.Slice` or
        :class:`deltaiqa_lite.score.SliceResult`).
    """
    members = list(members)
    if members and all(m.slice_location is not None for m in members):
        return sorted(members, key=lambda m: (m.slice_location, m.frame or 0))
    if members and all(m.instance_number is not None for m in members):
        return sorted(members, key=lambda m: (m.instance_number, m.frame or 0))
    return members  # sorted() is stable: keeping the given order is the honest fallback


def group_series(items: Iterable[T]) -> list[tuple[str | None, list[T]]]:
    """Group by ``series_uid`` (first appearance order) and order each group.

    Items without a Series Instance UID (unreadable files, ``.npy``, TIFF)
    form one group keyed ``None``, kept last and in input order.
    """
    groups: dict[str | None, list[T]] = {}
    for item in items:
        groups.setdefault(item.series_uid, []).append(item)
    ordered = [(uid, order_series(members)) for uid, members in groups.items() if uid is not None]
    if None in groups:
        ordered.append((None, groups[None]))
    return ordered
