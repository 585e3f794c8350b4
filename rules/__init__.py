# The shipped rule pack. Installed as the package data of ``detectors.rulepack``.
