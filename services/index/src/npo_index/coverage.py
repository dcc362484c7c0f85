"""Coverage statistics (design.md §5.3): per data controller, which categories it publishes. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from npo_platform.categories import AVAILABLE_CATEGORIES, find_by_code

from .store import CoverageCount


@dataclass(frozen=True)
class ControllerCoverage:
    data_controller: str
    categories: tuple[int, ...]  # category numbers with at least one live engagement
    engagements: int
    share_available: float  # share of categories 1-11 published, 0..1
    unknown_codes: tuple[str, ...]  # (serviceDomain/categorization) outside the category table


def coverage_report(counts: Iterable[CoverageCount]) -> list[ControllerCoverage]:
    """One entry per data controller with live engagements, sorted by controller."""
    numbers: dict[str, set[int]] = {}
    totals: dict[str, int] = {}
    unknown: dict[str, set[str]] = {}
    for count in counts:
        controller = count.data_controller
        totals[controller] = totals.get(controller, 0) + count.live
        category = find_by_code(count.service_domain, count.categorization)
        if category is None:
            unknown.setdefault(controller, set()).add(f"{count.service_domain}/{count.categorization}")
        else:
            numbers.setdefault(controller, set()).add(category.number)
    available = {c.number for c in AVAILABLE_CATEGORIES}
    return [
        ControllerCoverage(
            controller,
            tuple(sorted(numbers.get(controller, set()))),
            totals[controller],
            len(numbers.get(controller, set()) & available) / len(available),
            tuple(sorted(unknown.get(controller, set()))),
        )
        for controller in sorted(totals)
    ]
