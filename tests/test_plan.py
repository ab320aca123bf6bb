import pytest

from ciphermilter.core.plan import EditPlan, HeaderAdd, HeaderChange, HeaderDelete, PlanError, apply_plan

MESSAGE = (
    b"Received: from a\r\n\tby b\r\n"
    b"X-Test: one\r\n"
    b"Subject: hello\r\n"
    b"x-test: two\r\n"
    b"X-Test: three\r\n"
    b"\r\n"
    b"body\r\n"
)


@pytest.mark.parametrize("value", ["a\r\nb", "a\nb", "a\rb", "a\x00b", "tail\n", "a\n\nb"])
def test_values_with_a_header_break_are_refused(value):
    with pytest.raises(PlanError):
        HeaderAdd("X-Foo", value)


@pytest.mark.parametrize("name", ["", "X Foo", "X-Foo:", "Fö", "X\r\nBcc"])
def test_invalid_names_are_refused(name):
    with pytest.raises(PlanError):
        HeaderAdd(name, "v")


def test_folded_value_is_accepted():
    assert HeaderAdd("X-Foo", "a\n b\n\tc").value == "a\n b\n\tc"


def test_index_must_be_positive():
    with pytest.raises(PlanError):
        HeaderDelete("X-Test", 0)


def test_deletions_are_sorted_highest_index_first():
    plan = EditPlan(deletions=[HeaderDelete("X-Test", 1), HeaderDelete("X-Test", 3), HeaderDelete("X-Test", 2)])
    assert [d.index for d in plan.replay_deletions()] == [3, 2, 1]


def test_apply_deletes_by_case_insensitive_index_and_keeps_order():
    plan = EditPlan(deletions=[HeaderDelete("X-Test", 2), HeaderDelete("X-TEST", 3)])
    out = apply_plan(MESSAGE, plan)
    assert out == b"Received: from a\r\n\tby b\r\nX-Test: one\r\nSubject: hello\r\n\r\nbody\r\n"


def test_apply_changes_after_deletions_then_adds_then_body():
    plan = EditPlan(
        deletions=[HeaderDelete("X-Test", 1)],
        changes=[HeaderChange("x-test", 1, "new\n folded")],
        additions=[HeaderAdd("X-New", "v")],
        body=b"other\r\n",
    )
    out = apply_plan(MESSAGE, plan)
    assert out == (
        b"Received: from a\r\n\tby b\r\nSubject: hello\r\nx-test: new\r\n folded\r\nX-Test: three\r\n"
        b"X-New: v\r\n\r\nother\r\n"
    )


def test_empty_plan_keeps_message_byte_for_byte():
    assert apply_plan(MESSAGE, EditPlan()) == MESSAGE
