"""Django side of detection: loading and storing only. Configuration (``config``), the
``Activity`` → ``Observation`` mapping (``observations``), the profile and counter store
(``profiles``), the rule pre-filter planner (``prefilter``), trained models (``modelstore``),
review feedback (``feedback``, ``review``) and the batch runner (``runner``). The policy
(teaching, novelty, suppression, score combination) is the engine's: ``detectors.engine``."""
