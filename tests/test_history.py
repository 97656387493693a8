"""Which incoming messages are new to a thread."""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from lakebase_memory.memory import new_messages

U1, A1, U2, A2, U3 = (HumanMessage("u1"), AIMessage("a1"), HumanMessage("u2"), AIMessage("a2"),
                      HumanMessage("u3"))  # fmt: skip


def texts(messages) -> list[str]:
    return [m.content for m in messages]


def test_only_the_new_message() -> None:
    assert texts(new_messages([U1, A1], [U2])) == ["u2"]


def test_the_whole_history_resent() -> None:
    assert texts(new_messages([U1, A1, U2, A2], [U1, A1, U2, A2, U3])) == ["u3"]


def test_a_window_of_the_history() -> None:
    assert texts(new_messages([U1, A1, U2, A2], [U2, A2, U3])) == ["u3"]


def test_an_empty_thread_takes_everything() -> None:
    assert texts(new_messages([], [U1, A1, U2])) == ["u1", "a1", "u2"]


def test_nothing_new() -> None:
    assert new_messages([U1, A1], [U1, A1]) == []


def test_a_repeated_question_after_an_answer_is_new() -> None:
    assert texts(new_messages([U1, A1], [HumanMessage("u1")])) == ["u1"]


def test_content_parts_compare_as_their_text() -> None:
    parts = AIMessage([{"type": "output_text", "text": "a"}, {"type": "output_text", "text": "1"}])
    assert texts(new_messages([U1, A1], [HumanMessage("u1"), parts, U2])) == ["u2"]


def test_tool_calls_and_results_are_part_of_identity() -> None:
    call = AIMessage("", tool_calls=[{"id": "c1", "name": "f", "args": {"x": 1}}])
    other_call = AIMessage("", tool_calls=[{"id": "c1", "name": "f", "args": {"x": 2}}])
    result = ToolMessage("r", tool_call_id="c1")
    assert new_messages([U1, call, result], [U1, call, result]) == []
    assert len(new_messages([U1, call, result], [U1, other_call, result])) == 3
