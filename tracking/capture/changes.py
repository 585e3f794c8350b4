"""What changed after a login: account changes as ``ACCOUNT`` activities.

Changes of the user model's ``TRACKING_ACCOUNT_FIELDS`` (e-mail, password, ``is_active``,
``is_staff``, ``is_superuser`` by default), of group and permission membership (a user's
``groups`` and ``user_permissions``, a group's ``permissions``), the creation and deletion of
staff and superuser accounts, and changes of the fields listed in
``TRACKING_CHANGE_MODELS`` for other models. Each activity names the fields changed
(``params.fields``) with old and new values except for secrets (the password, anything
``SENSITIVE_FIELDS`` names), the acting user (the request's user when there is one, else the
account itself) and the request's client, session and path, so the change sits in the same
timeline as the login before it. It is recorded when the transaction commits (a rolled-back
change never happened). Changes made with ``QuerySet.update()`` send no signal and are not
seen. ``TRACKING_ACCOUNT_CHANGES = False`` turns all of it off.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from tracking.capture.context import current_request, set_user
from tracking.capture.tracker import get_tracker, user_of
from tracking.conf import on_reload, tracking_settings
from tracking.events import Event
from tracking.pipeline import handoff
from tracking.redaction import is_sensitive

logger = logging.getLogger("tracking.recording")

DISPATCH_UID = "tracking.capture.changes"
_STASH = "_tracking_changes"
# Fields of the user model that mark a privileged account (its creation is recorded).
PRIVILEGE_FIELDS = ("is_staff", "is_superuser")


def _label(model: type[Model]) -> str:
    return model._meta.label_lower


@lru_cache(maxsize=1)
def _watched() -> dict[str, tuple[str, ...]]:
    """Model label -> field names watched (only fields the model has)."""
    out: dict[str, tuple[str, ...]] = {}
    user_model = get_user_model()
    out[_label(user_model)] = _existing(user_model, tracking_settings.ACCOUNT_FIELDS or [])
    for label, names in dict(tracking_settings.CHANGE_MODELS or {}).items():
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError):
            continue  # reported by the system check tracking.E163
        out[_label(model)] = _existing(model, names or [])
    return out


def _existing(model: type[Model], names: Any) -> tuple[str, ...]:
    concrete = {f.name for f in model._meta.concrete_fields}
    return tuple(n for n in names if n in concrete)


def _secret(name: str) -> bool:
    return name == "password" or is_sensitive(name)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


# --- receivers ---------------------------------------------------------------------------
def _names(model: type[Model]) -> tuple[str, ...]:
    """The watched fields of ``model`` (empty: not watched, or TRACKING_ACCOUNT_CHANGES off)."""
    if not tracking_settings.ACCOUNT_CHANGES:
        return ()
    return _watched().get(_label(model), ())


def on_pre_save(sender, instance, raw=False, using=None, update_fields=None, **kwargs) -> None:
    names = _names(sender)
    if not names or raw or instance._state.adding or instance.pk is None:
        return
    if update_fields is not None:
        names = tuple(n for n in names if n in update_fields)
        if not names:
            return  # e.g. the last_login update of every login: no query
    columns = [sender._meta.get_field(n).attname for n in names]
    old = sender._base_manager.using(using).filter(pk=instance.pk).values(*columns).first()
    if old is None:
        return
    changes = {}
    for name, column in zip(names, columns, strict=True):
        before, after = old[column], getattr(instance, column)
        if before != after:
            changes[name] = (before, after)
    if changes:
        instance.__dict__[_STASH] = changes


def on_post_save(sender, instance, created=False, raw=False, using=None, **kwargs) -> None:
    names = _names(sender)
    if not names or raw:
        return
    if created:
        if not _noted_lifecycle(sender, instance):
            return
        changes = {
            n: (None, getattr(instance, n))
            for n in names
            if getattr(instance, n) not in (None, "", False)
        }
        _schedule(instance, "created", changes, using)
        return
    changes = instance.__dict__.pop(_STASH, None)
    if changes:
        _schedule(instance, "changed", changes, using)


def on_post_delete(sender, instance, using=None, **kwargs) -> None:
    if _names(sender) and _noted_lifecycle(sender, instance):
        _schedule(instance, "deleted", {}, using)


def _noted_lifecycle(model: type[Model], instance: Any) -> bool:
    """Whether creating or deleting ``instance`` is recorded: always for the models of
    ``TRACKING_CHANGE_MODELS``; for accounts only staff and superusers (ordinary sign-ups
    and closures are the site's business, a new or removed administrator is not)."""
    if model is not get_user_model():
        return True
    return any(getattr(instance, f, False) for f in PRIVILEGE_FIELDS)


def _membership_name(obj: Any) -> str:
    if isinstance(obj, Permission):
        return f"{obj.content_type.app_label}.{obj.codename}"
    if isinstance(obj, Group):
        return obj.name
    return str(obj.pk)


def on_m2m_changed(sender, instance, action, reverse, model, pk_set, using=None, **kwargs):
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not tracking_settings.ACCOUNT_CHANGES:
        return
    relation = _relations().get(sender)
    if relation is None:
        return
    owner_model, field = relation
    verb = "added" if action == "post_add" else "removed"
    if not reverse:
        if action == "pre_clear":
            related = list(getattr(instance, field).all())
        else:
            related = list(model._base_manager.using(using).filter(pk__in=pk_set or ()))
        if related:
            names = sorted(_membership_name(o) for o in related)
            _schedule(instance, "changed", {field: {verb: names}}, using)
        return
    # e.g. group.user_set.add(user): one activity per account whose membership changed
    if action == "pre_clear":
        owners = list(owner_model._base_manager.using(using).filter(**{field: instance}))
    else:
        owners = list(owner_model._base_manager.using(using).filter(pk__in=pk_set or ()))
    for owner in owners:
        _schedule(owner, "changed", {field: {verb: [_membership_name(instance)]}}, using)


@lru_cache(maxsize=1)
def _relations() -> dict[type, tuple[type, str]]:
    """Through model -> (model owning the relation, field name) of the watched memberships."""
    out: dict[type, tuple[type, str]] = {}
    user_model = get_user_model()
    for model, field in ((user_model, "groups"), (user_model, "user_permissions")):
        try:
            # groups / user_permissions are many-to-many fields: remote_field has through.
            out[model._meta.get_field(field).remote_field.through] = (model, field)  # type: ignore[union-attr]
        except Exception:  # noqa: S112 - a custom user model without the mixin
            continue
    out[Group.permissions.through] = (Group, "permissions")
    return out


# --- recording ---------------------------------------------------------------------------
def change_document(instance: Any, action: str, changes: dict[str, Any]) -> dict[str, Any]:
    """``params`` of an ACCOUNT activity: what changed on which object, secrets unnamed."""
    shown: dict[str, Any] = {}
    for name, value in changes.items():
        if _secret(name):
            continue
        if isinstance(value, tuple):
            shown[name] = [_plain(value[0]), _plain(value[1])]
        else:
            shown[name] = value
    obj: dict[str, Any] = {"model": _label(type(instance)), "id": _plain(instance.pk)}
    if isinstance(instance, get_user_model()):
        obj["username"] = str(instance.get_username())[:150]
    elif isinstance(instance, Group):
        obj["name"] = instance.name[:150]
    return {"action": action, "object": obj, "fields": sorted(changes), "changes": shown}


def _schedule(instance: Any, action: str, changes: dict[str, Any], using: str | None) -> None:
    try:
        event = _event(instance, action, changes)
    except Exception:  # the change itself must go through
        logger.exception("tracking: could not describe an account change")
        return
    transaction.on_commit(lambda: _record(event), using=using)


def _event(instance: Any, action: str, changes: dict[str, Any]) -> Event:
    request = current_request()
    doc = change_document(instance, action, changes)
    if request is not None:
        actor = user_of(request)
        event = get_tracker().build_event(
            request, None, activity_type="ACCOUNT", started=time.perf_counter(), user=actor
        )
        event.params = doc
    else:
        event = Event(type="ACCOUNT", params=doc)
    if event.user_id is None and action != "deleted" and isinstance(instance, get_user_model()):
        set_user(event, instance)  # nobody logged in (a password reset link, a shell)
    return event


def _record(event: Event) -> None:
    try:
        get_tracker().record(event)
    except Exception:
        handoff.count("record_errors")
        logger.exception("tracking: could not record an account change")


def connect() -> None:
    pre_save.connect(on_pre_save, dispatch_uid=DISPATCH_UID + ".pre_save")
    post_save.connect(on_post_save, dispatch_uid=DISPATCH_UID + ".post_save")
    m2m_changed.connect(on_m2m_changed, dispatch_uid=DISPATCH_UID + ".m2m")
    _connect_deletes()


_delete_senders: list[type[Model]] = []


def _connect_deletes() -> None:
    """``post_delete`` for the watched models only, reconnected when the settings change. A
    receiver for every sender takes Django's fast delete from every model of the site: each
    ``QuerySet.delete()`` would first fetch the rows it deletes (the writer's removal of
    committed intake rows among them)."""
    _watched.cache_clear()  # the settings changed: the watched models and fields too
    for model in _delete_senders:
        post_delete.disconnect(sender=model, dispatch_uid=DISPATCH_UID + ".post_delete")
    _delete_senders.clear()
    if not tracking_settings.ACCOUNT_CHANGES:
        return
    for label in _watched():
        model = apps.get_model(label)
        post_delete.connect(
            on_post_delete, sender=model, dispatch_uid=DISPATCH_UID + ".post_delete"
        )
        _delete_senders.append(model)


on_reload(_connect_deletes)
