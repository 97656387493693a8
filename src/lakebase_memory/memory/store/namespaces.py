"""Where a user's memories live in the store: the reference's namespace,
`("user_memories", user_id.replace(".", "-"))`, so a store written by the reference's agent
reads as it is for every user id without "-" or "%" (most e-mail addresses).

The reference's mapping alone is not one-to-one: `john.smith@corp.com` and
`john-smith@corp.com` would share one namespace, and read and delete each other's memories. So
"%" and "-" are escaped first ("%25", "%2D"), and then "." becomes "-": every user id has a
namespace of its own, and the mapping can be read backwards.
"""

from __future__ import annotations

USER_MEMORIES = "user_memories"


def user_label(user_id: str) -> str:
    # LangGraph's namespaces are dot-joined in the `prefix` column: a label may not hold one.
    return user_id.replace("%", "%25").replace("-", "%2D").replace(".", "-")


def user_namespace(user_id: str) -> tuple[str, str]:
    return (USER_MEMORIES, user_label(user_id))


def namespace_prefix(user_id: str) -> str:
    """The `store.prefix` of the user's namespace (rows below it start with this and a dot)."""
    return ".".join(user_namespace(user_id))


def namespace_patterns(user_id: str) -> dict[str, str]:
    """Parameters matching the user's rows: `prefix = %(prefix)s OR prefix LIKE %(below)s
    ESCAPE '\\'` (the namespace itself and all below it; LIKE's wildcards escaped)."""
    prefix = namespace_prefix(user_id)
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"prefix": prefix, "below": f"{escaped}.%"}
