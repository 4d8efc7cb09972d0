"""Study assembly: four standard views, or the quiet period."""

from datetime import datetime, timedelta, timezone

from services.ingest.assembly import has_standard_views, normalise_view, quiet_since


def test_four_standard_views_complete_a_study() -> None:
    assert has_standard_views([("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")])
    assert has_standard_views([("r", "cc"), ("L", "XCCL"), ("R", "ML"), ("L", "MLO"), ("L", "CC")])


def test_missing_view_or_laterality_keeps_the_study_open() -> None:
    assert not has_standard_views([("R", "CC"), ("L", "CC"), ("R", "MLO")])
    assert not has_standard_views([("R", "CC"), ("L", "CC"), ("R", "MLO"), (None, "MLO")])


def test_view_positions_are_normalised() -> None:
    assert [normalise_view(v) for v in ("CC", "ML", "MLO", "XCCL", "LM", "AP", None)] == ["CC", "MLO", "MLO", "CC", "MLO", None, None]


def test_quiet_period_works_with_naive_and_aware_times() -> None:
    now = datetime(2026, 1, 1, 12, 0, 30, tzinfo=timezone.utc)
    assert quiet_since(datetime(2026, 1, 1, 12, 0, 0), now, 30)
    assert not quiet_since(now - timedelta(seconds=29), now, 30)
