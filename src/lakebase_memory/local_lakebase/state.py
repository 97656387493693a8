"""The local workspace: identities, their REST tokens, apps, the instance; kept in a JSON file
(the records themselves are in `records.py`)."""

from __future__ import annotations

import json
import os
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lakebase_memory.errors import ConfigurationError
from lakebase_memory.local_lakebase.records import (
    APP_NAME_PATTERN,
    BRANCH_ID_PATTERN,
    DATABASE_NAME,
    STATE_VERSION,
    App,
    AutoscalingEndpoint,
    Branch,
    Identity,
    IdentityKind,
    Instance,
    new_pat,
    new_scim_id,
    now_rfc3339,
    rfc3339,
)

__all__ = [
    "APP_NAME_PATTERN",
    "BRANCH_ID_PATTERN",
    "DATABASE_NAME",
    "STATE_VERSION",
    "App",
    "AutoscalingEndpoint",
    "Branch",
    "Identity",
    "IdentityKind",
    "Instance",
    "Workspace",
    "new_pat",
    "new_scim_id",
    "now_rfc3339",
    "rfc3339",
]


class Workspace:
    """Everything the control plane knows, behind one lock; every change is saved at once.

    Database access rule ("CAN USE" on the instance, which also covers the autoscaling
    endpoint): the owner always, plus the identities in `can_use`. Only they may mint database
    credentials.
    """

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self._lock = threading.RLock()
        self.workspace_id: str = data["workspace_id"]
        self.owner: str = data["owner"]
        self.identities: dict[str, Identity] = {
            item["name"]: Identity(**{**item, "kind": IdentityKind(item["kind"])})
            for item in data["identities"]
        }
        self.instance = Instance(**data["instance"])
        self.endpoint = AutoscalingEndpoint(**data["endpoint"])
        self.apps: dict[str, App] = {item["name"]: App(**item) for item in data["apps"]}
        self.branches: dict[str, Branch] = {
            item["branch"]: Branch(**item) for item in data.get("branches", [])
        }
        self.can_use: set[str] = set(data["can_use"])
        self.ports: dict[str, int] = dict(data.get("ports", {}))
        # A fault to rehearse, not saved: credential requests succeed but carry no token (the
        # API's JSON leaves an empty field out). No documented cause on Databricks; the
        # connector must still say what happened rather than log in with no password.
        self.empty_credentials = False
        # Another, not saved: the endpoint is still being created (state INIT), and the API
        # gives no host until it is ACTIVE.
        self.endpoint_initializing = False
        # Called with the identity list after every change, to refresh the database's copy.
        self.on_identities_changed: Callable[[list[Identity]], None] | None = None

    # --- loading and saving ---------------------------------------------------------------

    @classmethod
    def load_or_create(
        cls,
        path: Path,
        *,
        owner: str,
        instance_name: str,
        project: str,
        branch: str,
        endpoint: str,
    ) -> Workspace:
        """Load the workspace saved in `path`, or create it with `owner` as its first user."""
        if path.exists():
            data = json.loads(path.read_text())
            if data.get("version") != STATE_VERSION:
                raise ConfigurationError(
                    f"{path} was written by another version of the local Lakebase; "
                    "delete its data folder or use another --data-dir."
                )
            if data["owner"] != owner:
                raise ConfigurationError(
                    f"The local Lakebase in {path.parent} belongs to {data['owner']}, not "
                    f"{owner}. Use --owner {data['owner']} or another --data-dir."
                )
            workspace = cls(path, data)
            workspace._rename(instance_name, project, branch, endpoint)
            return workspace
        if "@" not in owner:
            raise ValueError(f"the owner is a user, named by an email address, got {owner!r}")
        created = now_rfc3339()
        owner_identity = Identity(
            IdentityKind.USER, owner, owner.split("@")[0], new_scim_id(), new_pat()
        )
        data = {
            "version": STATE_VERSION,
            "workspace_id": new_scim_id(),
            "owner": owner,
            "identities": [asdict(owner_identity)],
            "instance": asdict(Instance(instance_name, str(uuid.uuid4()), owner, created)),
            "endpoint": asdict(
                AutoscalingEndpoint(
                    project=project,
                    branch=branch,
                    endpoint=endpoint,
                    project_uid=str(uuid.uuid4()),
                    branch_uid=f"br-{_short_id()}",
                    endpoint_uid=f"ep-{_short_id()}",
                    create_time=created,
                )
            ),
            "apps": [],
            "branches": [],
            "can_use": [],
        }
        workspace = cls(path, data)
        workspace.save()
        return workspace

    def _rename(self, instance_name: str, project: str, branch: str, endpoint: str) -> None:
        # The names are the caller's to choose at each start; uids and data stay.
        with self._lock:
            self.instance.name = instance_name
            self.endpoint.project, self.endpoint.branch = project, branch
            self.endpoint.endpoint = endpoint
            self.save()

    def save(self) -> None:
        with self._lock:
            data = {
                "version": STATE_VERSION,
                "workspace_id": self.workspace_id,
                "owner": self.owner,
                "identities": [asdict(identity) for identity in self.identities.values()],
                "instance": asdict(self.instance),
                "endpoint": asdict(self.endpoint),
                "apps": [asdict(app) for app in self.apps.values()],
                "branches": [asdict(branch) for branch in self.branches.values()],
                "can_use": sorted(self.can_use),
                "ports": self.ports,
            }
            # Tokens and secrets inside: private to the owner, replaced atomically.
            temporary = self.path.with_suffix(".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as file:
                json.dump(data, file, indent=2)
            os.replace(temporary, self.path)

    # --- identities -----------------------------------------------------------------------

    def identity(self, name: str) -> Identity | None:
        with self._lock:
            return self.identities.get(name)

    def all_identities(self) -> list[Identity]:
        with self._lock:
            return list(self.identities.values())

    def identity_by_token(self, token: str) -> Identity | None:
        with self._lock:
            for identity in self.identities.values():
                if secrets.compare_digest(identity.token, token):
                    return identity
            return None

    def identity_by_scim_id(self, scim_id: str) -> Identity | None:
        with self._lock:
            return next((i for i in self.identities.values() if i.scim_id == scim_id), None)

    def add_user(self, email: str) -> Identity:
        """The user with this email, created if new."""
        email = email.strip()
        if "@" not in email:
            raise ValueError(f"a user is named by an email address, got {email!r}")
        with self._lock:
            existing = self.identities.get(email)
            if existing is not None:
                return self._expect_kind(existing, IdentityKind.USER)
            identity = Identity(
                IdentityKind.USER, email, email.split("@")[0], new_scim_id(), new_pat()
            )
            return self._add(identity)

    def add_service_principal(
        self, display_name: str, application_id: str | None = None
    ) -> Identity:
        """The service principal with this display name, created if new (display names are
        unique here, so repeated set-up calls are idempotent)."""
        display_name = display_name.strip()
        if not display_name:
            raise ValueError("a service principal needs a display name")
        with self._lock:
            for identity in self.identities.values():
                if identity.is_service_principal and identity.display_name == display_name:
                    return identity
            name = str(uuid.UUID(application_id)) if application_id else str(uuid.uuid4())
            if name in self.identities:
                raise ValueError(f"application id {name} is already taken")
            identity = Identity(
                IdentityKind.SERVICE_PRINCIPAL,
                name,
                display_name,
                new_scim_id(),
                new_pat(),
                client_secret="dose" + secrets.token_hex(16),  # an OAuth secret's shape
            )
            return self._add(identity)

    def _add(self, identity: Identity) -> Identity:
        self.identities[identity.name] = identity
        self.save()
        self._identities_changed()
        return identity

    def _identities_changed(self) -> None:
        if self.on_identities_changed is not None:
            self.on_identities_changed(self.all_identities())

    @staticmethod
    def _expect_kind(identity: Identity, kind: IdentityKind) -> Identity:
        if identity.kind is not kind:
            raise ValueError(f"{identity.name} is a {identity.kind.value}, not a {kind.value}")
        return identity

    def rotate_token(self, name: str) -> Identity:
        """Replace the identity's REST token: the old one is refused from now on."""
        with self._lock:
            identity = self.require(name)
            identity.token = new_pat()
            self.save()
            return identity

    def require(self, name: str) -> Identity:
        identity = self.identity(name)
        if identity is None:
            raise KeyError(f"no identity named {name!r} in the local workspace")
        return identity

    # --- apps -----------------------------------------------------------------------------

    def add_app(self, name: str) -> App:
        """The app with this name, created with its own service principal if new."""
        if not APP_NAME_PATTERN.match(name):
            raise ValueError(
                f"app name {name!r} is not valid: use 2-30 lowercase letters, digits or dashes"
            )
        with self._lock:
            existing = self.apps.get(name)
            if existing is not None:
                return existing
            principal = self.add_service_principal(f"app-{_short_id()} {name}")
            app = App(
                name=name,
                id=str(uuid.uuid4()),
                service_principal=principal.name,
                service_principal_name=principal.display_name,
                creator=self.owner,
                create_time=now_rfc3339(),
            )
            self.apps[name] = app
            # An app's service principal may mint credentials (CAN USE), as it does on
            # Databricks once deployed with the instance; its Postgres role is another matter
            # (see LocalLakebase.attach_app_resource).
            self.can_use.add(principal.name)
            self.save()
            return app

    def app(self, name: str) -> App | None:
        with self._lock:
            return self.apps.get(name)

    def all_apps(self) -> list[App]:
        with self._lock:
            return list(self.apps.values())

    def mark_database_resource(self, name: str) -> App:
        with self._lock:
            app = self.apps[name]
            app.database_resource = True
            self.can_use.add(app.service_principal)
            self.save()
            return app

    # --- autoscaling branches ---------------------------------------------------------------

    def add_branch(self, branch_id: str) -> Branch:
        """A branch of the project without compute (created if new): it has no endpoint."""
        branch_id = branch_id.strip()
        if not BRANCH_ID_PATTERN.match(branch_id):
            raise ValueError(
                f"branch id {branch_id!r} is not valid: 1-63 lowercase letters, digits or dashes, "
                "starting with a letter"
            )
        with self._lock:
            if branch_id == self.endpoint.branch:
                raise ValueError(f"{branch_id!r} is the default branch, which has the endpoint")
            existing = self.branches.get(branch_id)
            if existing is not None:
                return existing
            branch = Branch(branch_id, f"br-{_short_id()}", now_rfc3339())
            self.branches[branch_id] = branch
            self.save()
            return branch

    def all_branches(self) -> list[Branch]:
        """The branches other than the default one (which has the endpoint)."""
        with self._lock:
            return list(self.branches.values())

    # --- database access ------------------------------------------------------------------

    def may_use_database(self, name: str) -> bool:
        with self._lock:
            return name == self.owner or name in self.can_use

    def grant_can_use(self, name: str) -> None:
        with self._lock:
            self.require(name)
            self.can_use.add(name)
            self.save()

    def revoke_can_use(self, name: str) -> None:
        with self._lock:
            self.can_use.discard(name)
            self.save()

    def remember_ports(self, http: int, pg: int) -> None:
        with self._lock:
            self.ports = {"http": http, "pg": pg}
            self.save()


def _short_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(6))
