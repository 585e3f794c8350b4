"""Django side of detection: configuration, the batch runner, stored profiles and models,
review feedback. The engine itself lives in the top-level ``detectors`` package."""
