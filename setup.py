"""Package list for setuptools (metadata lives in pyproject.toml).

The rule pack lives in the top-level ``rules/`` folder of the checkout and is installed as
the package ``detectors.rulepack``, so a plain ``pip install`` finds it without a top-level
package called ``rules`` (which would clash with django-rules).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["tracking", "tracking.*", "detectors", "detectors.*"])
    + ["detectors.rulepack"],
    package_dir={"detectors.rulepack": "rules"},
)
