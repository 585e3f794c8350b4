"""Review feedback: a reviewer's verdict on a flagged activity updates the user's profile.

"dismissed" teaches the profile (the place, network and device become known, so the same
benign pattern stops firing); "confirmed" is kept as a label (in the profile, and
``tracking train`` leaves confirmed attacks out) and forgets whatever that event had taught.
The policy is the engine's (``Engine.dismiss`` / ``Engine.confirm``); this module loads and
stores what it touches.
"""

from __future__ import annotations

from detectors.population import NAMESPACE, Population
from detectors.profile import UserProfile
from tracking.detection import config
from tracking.detection import profiles as store
from tracking.detection.observations import observation
from tracking.models import Activity, ReviewStatus


def on_review(activity: Activity, status: str) -> None:
    """Called by the review path (``tracking.detection.review``) after a verdict."""
    if status not in (ReviewStatus.DISMISSED, ReviewStatus.CONFIRMED):
        return
    if activity.get_deferred_fields():
        # The review path loads only a few columns; one full read beats a query per field.
        activity = Activity.objects.get(pk=activity.pk)
    obs = observation(activity, with_params=False)
    if not obs.user_key:
        return
    engine = config.engine()
    profile = store.load_profiles([obs.user_key]).get(obs.user_key) or UserProfile(key=obs.user_key)
    if status == ReviewStatus.DISMISSED:
        population = Population(store.load_counters(NAMESPACE, engine.population_keys([obs])))
        engine.dismiss(obs, profile, population)
        changed = population.changed()
        if changed:
            store.save_counters(NAMESPACE, changed)
    else:
        engine.confirm(obs, profile)
    store.save_profiles([profile])
