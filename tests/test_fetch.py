"""fetch._next_tasks: however a task's interval is cut, the pieces cover exactly what is left to read."""

from __future__ import annotations

import pytest

from nilus_stripe_assets.reading.fetch import PAGE_LIMIT, PAGES_PER_TASK, _next_tasks, _Task


def _page(newest: int, oldest: int) -> list[dict]:
    step = (newest - oldest) / (PAGE_LIMIT - 1)
    return [{"id": f"ch_{i}", "created": round(newest - i * step)} for i in range(PAGE_LIMIT)]


def _covered(tasks: list[_Task], floor: int, oldest: int) -> list[int]:
    """Every second in [floor, oldest] once, given the tasks' half-open intervals. Past its cursor a newest-
    first list holds nothing newer than the cursor's page, so the cursor task reads up to `oldest` only."""
    seconds = []
    for task in tasks:
        lo = task.gte if task.gte is not None else floor
        hi = min(task.lt, oldest + 1) if task.starting_after else task.lt
        seconds.extend(range(lo, hi))
    return sorted(seconds)


@pytest.mark.parametrize("idle", [0, 1, 3, 7])
@pytest.mark.parametrize("tail", [False, True])
@pytest.mark.parametrize("pages_left", [1, 3, 10, 40, 500])
def test_pieces_cover_the_rest_exactly_once(idle, tail, pages_left):
    # 100 objects over 100 seconds: one page per 100 s of history.
    newest, oldest = 1_000_000, 1_000_000 - 99
    floor = oldest - pages_left * 100
    task = _Task(floor, newest + 1)
    tasks = _next_tasks(task, _page(newest, oldest), idle=idle, tail=tail)
    # The cursor keeps its ties and the task's upper bound; its next page must not start newer than `oldest`.
    assert tasks[0].starting_after == "ch_99" and tasks[0].lt == newest + 1 and tasks[0].after_time == oldest
    assert all(t.starting_after is None for t in tasks[1:])
    assert _covered(tasks, floor, oldest) == list(range(floor, oldest + 1))
    assert len(tasks) - 1 <= idle
    if idle == 0 or pages_left < 4:
        assert len(tasks) == 1
    if idle and pages_left >= 1.5 * PAGES_PER_TASK:
        assert len(tasks) > 1  # idle workers get work at once
    if idle and tail and pages_left == 10:
        assert len(tasks) == 2  # the tail halves what is left


def test_an_unbounded_first_task_keeps_its_open_end():
    task = _Task(None, None)
    tasks = _next_tasks(task, _page(10_000_000, 10_000_000 - 99), idle=7, tail=False)
    assert len(tasks) == 8
    assert tasks[-1].gte is None  # the oldest piece reaches back to the beginning
