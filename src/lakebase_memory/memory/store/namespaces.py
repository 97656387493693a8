"""Where a user's memories live in the store: the reference's namespace, so a store written by
the reference's agent (`("user_memories", user_id.replace(".", "-"))`) reads as it is."""

from __future__ import annotations

USER_MEMORIES = "user_memories"


def user_namespace(user_id: str) -> tuple[str, str]:
    # LangGraph's namespaces are dot-joined in the `prefix` column: a label may not hold one.
    return (USER_MEMORIES, user_id.replace(".", "-"))


def namespace_prefix(user_id: str) -> str:
    """The `store.prefix` of the user's namespace (rows below it start with this and a dot)."""
    return ".".join(user_namespace(user_id))
