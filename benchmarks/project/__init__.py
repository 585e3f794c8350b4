"""A minimal Django project served by gunicorn for the request-overhead benchmark.

One settings module per variant (``settings_<variant>``) so each competitor is installed the
way its documentation says, and the untracked baseline carries nothing extra.
"""
