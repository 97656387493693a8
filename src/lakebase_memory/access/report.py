"""`privileges_of(role)`: a read-only report of what a role has been granted.

It lists privileges held by the role itself (explicit grants, and an owner's implicit ones)
on the current database, on schemas, tables and sequences, and the default privileges other
roles set up for it. Privileges that come through PUBLIC or through membership in another role
are not listed; `member_of` names those roles.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, LiteralString

from psycopg import sql

# One row per (object, privilege). acldefault() supplies an owner's privileges when an ACL is
# NULL (never changed), so objects the role owns show what it can do on them.
GRANTS_QUERY: LiteralString = """
WITH r AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = {role})
SELECT 'database' AS kind, d.datname::text AS name, a.privilege_type AS privilege,
       a.is_grantable AS grantable
FROM pg_catalog.pg_database d, r,
     aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
WHERE d.datname = current_database() AND a.grantee = r.oid
UNION ALL
SELECT 'schema', n.nspname::text, a.privilege_type, a.is_grantable
FROM pg_catalog.pg_namespace n, r,
     aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
WHERE a.grantee = r.oid
UNION ALL
SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END,
       n.nspname || '.' || c.relname, a.privilege_type, a.is_grantable
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, r,
     aclexplode(coalesce(c.relacl,
                         acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::"char",
                                    c.relowner))) a
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND a.grantee = r.oid
UNION ALL
SELECT 'default privileges on ' || CASE d.defaclobjtype
           WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions'
           WHEN 'T' THEN 'types' ELSE 'schemas' END,
       'for role ' || pg_catalog.pg_get_userbyid(d.defaclrole)
           || coalesce(' in schema ' || n.nspname, ''),
       a.privilege_type, a.is_grantable
FROM pg_catalog.pg_default_acl d LEFT JOIN pg_catalog.pg_namespace n
     ON n.oid = d.defaclnamespace, r, aclexplode(d.defaclacl) a
WHERE a.grantee = r.oid
ORDER BY 1, 2, 3
"""

ROLE_QUERY: LiteralString = """
SELECT r.rolcanlogin AS login, r.rolsuper AS superuser,
       coalesce(array_agg(DISTINCT m.rolname::text ORDER BY m.rolname::text)
                FILTER (WHERE m.rolname IS NOT NULL), '{{}}') AS member_of
FROM pg_catalog.pg_roles r
LEFT JOIN pg_catalog.pg_auth_members am ON am.member = r.oid
LEFT JOIN pg_catalog.pg_roles m ON m.oid = am.roleid
WHERE r.rolname = {role}
GROUP BY r.rolcanlogin, r.rolsuper
"""


def grants_query(role: str) -> sql.Composed:
    return sql.SQL(GRANTS_QUERY).format(role=sql.Literal(role))


def role_query(role: str) -> sql.Composed:
    return sql.SQL(ROLE_QUERY).format(role=sql.Literal(role))


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege on one object: `kind` is database, schema, table, sequence or
    'default privileges on tables|sequences|...'; `name` is qualified (`schema.table`)."""

    kind: str
    name: str
    privilege: str
    grantable: bool = False

    def __str__(self) -> str:
        option = " WITH GRANT OPTION" if self.grantable else ""
        return f"{self.privilege} on {self.kind} {self.name}{option}"


@dataclass(frozen=True)
class PrivilegeReport:
    """What `role` holds. Equal reports for two roles mean the same privileges."""

    role: str
    exists: bool
    can_login: bool = False
    superuser: bool = False
    member_of: tuple[str, ...] = ()
    grants: tuple[Grant, ...] = field(default=())

    def on(self, kind: str, name: str) -> set[str]:
        """The privileges held on one object, e.g. `on("schema", "ai_chatbot")`."""
        return {g.privilege for g in self.grants if g.kind == kind and g.name == name}

    def summary(self) -> dict[str, list[str]]:
        """`{"table ai_chatbot.Chat": ["DELETE", "INSERT", ...], ...}` without the role name:
        compare two roles' summaries to check they were granted the same."""
        result: dict[str, list[str]] = {}
        for g in self.grants:
            result.setdefault(f"{g.kind} {g.name}", []).append(
                g.privilege + (" WITH GRANT OPTION" if g.grantable else "")
            )
        return result

    def lines(self) -> list[str]:
        if not self.exists:
            return [f'role "{self.role}" does not exist']
        head = f'role "{self.role}"' + (" (LOGIN)" if self.can_login else " (NOLOGIN)")
        if self.superuser:
            head += " SUPERUSER: every privilege"
        if self.member_of:
            head += f", member of {', '.join(self.member_of)}"
        return [head] + [f"  {what}: {', '.join(privs)}" for what, privs in self.summary().items()]


def build_report(
    role: str,
    role_rows: Sequence[Mapping[str, Any]] | None,
    grant_rows: Sequence[Mapping[str, Any]] | None,
) -> PrivilegeReport:
    if not role_rows:
        return PrivilegeReport(role=role, exists=False)
    attributes = role_rows[0]
    grants = tuple(
        sorted(
            Grant(str(r["kind"]), str(r["name"]), str(r["privilege"]), bool(r["grantable"]))
            for r in grant_rows or ()
        )
    )
    return PrivilegeReport(
        role=role,
        exists=True,
        can_login=bool(attributes["login"]),
        superuser=bool(attributes["superuser"]),
        member_of=tuple(attributes["member_of"] or ()),
        grants=grants,
    )
