"""Translations: the Norwegian Bokmål catalog is complete and compiled, and the dashboard, the
admin, the API and the system checks speak it.

The catalog checks read the files directly (no gettext tools needed): every entry of
``tracking/locale/nb/LC_MESSAGES/django.po`` is translated and not fuzzy, keeps the
placeholders of its msgid, the committed ``django.mo`` holds exactly the .po's translations,
and every string marked in the app's Python code and templates has an entry.
"""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core import checks
from django.test import override_settings
from django.utils import translation
from django.utils.translation.template import templatize

import tracking
from tracking.models import Activity
from tracking.testing.factories import make_activity

APP = Path(tracking.__file__).resolve().parent
PO = APP / "locale" / "nb" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")
INDEX = "/api/tracking/dashboard/"
PLACEHOLDER = re.compile(r"%\(\w+\)[sdr]")

# A plain site: LocaleMiddleware picks the language from Accept-Language.
LOCALE_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
LANGUAGES = [("en", "English"), ("nb", "Norwegian Bokmål")]


# --- the catalog -------------------------------------------------------------------------


def _unquote(lines: list[str]) -> str:
    return "".join(ast.literal_eval(line) for line in lines)


def parse_po(path: Path) -> list[dict]:
    """Entries of a .po file: msgid, msgstr, flags (the header entry included). A plural
    entry also has ``msgid_plural`` and its forms in ``plurals`` (``msgstr`` is the first)."""
    entries, current, field = [], None, None
    for raw in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        if not line:
            if current is not None:
                entries.append(current)
            current, field = None, None
            continue
        if current is None:
            current = {
                "flags": set(),
                "msgctxt": [],
                "msgid": [],
                "msgstr": [],
                "msgid_plural": [],
                "forms": {},
                "obsolete": False,
            }
        if line.startswith("#~"):
            current["obsolete"] = True
        elif line.startswith("#,"):
            current["flags"] |= {f.strip() for f in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith("msgctxt "):
            field = "msgctxt"
            current[field].append(line[8:])
        elif line.startswith("msgid "):
            field = "msgid"
            current[field].append(line[6:])
        elif line.startswith("msgid_plural "):
            field = "msgid_plural"
            current[field].append(line[13:])
        elif line.startswith("msgstr "):
            field = "msgstr"
            current[field].append(line[7:])
        elif line.startswith("msgstr["):
            index, _, rest = line[7:].partition("] ")
            field = int(index)
            current["forms"][field] = [rest]
        elif line.startswith('"') and isinstance(field, int):
            current["forms"][field].append(line)
        elif line.startswith('"') and field:
            current[field].append(line)
        else:
            raise AssertionError(f"{path}: unexpected line {raw!r}")
    for entry in entries:
        entry["msgid"] = _unquote(entry["msgid"])
        entry["msgid_plural"] = _unquote(entry["msgid_plural"])
        entry["plurals"] = [_unquote(entry["forms"][i]) for i in sorted(entry["forms"])]
        entry["msgstr"] = entry["plurals"][0] if entry["plurals"] else _unquote(entry["msgstr"])
        # gettext's catalog key: "context\x04msgid" for a msgid with a context.
        context = _unquote(entry["msgctxt"])
        entry["key"] = f"{context}\x04{entry['msgid']}" if entry["msgctxt"] else entry["msgid"]
    return entries


def _messages() -> list[dict]:
    return [e for e in parse_po(PO) if e["msgid"] and not e["obsolete"]]


def test_po_entries_are_all_translated_and_none_is_fuzzy():
    entries = parse_po(PO)
    header = next(e for e in entries if e["msgid"] == "")
    assert "Language: nb" in header["msgstr"]
    assert "fuzzy" not in header["flags"]
    messages = _messages()
    assert len(messages) > 200
    untranslated = [
        e["msgid"]
        for e in messages
        if not e["msgstr"].strip() or not all(form.strip() for form in e["plurals"])
    ]
    fuzzy = [e["msgid"] for e in messages if "fuzzy" in e["flags"]]
    obsolete = [e for e in entries if e["obsolete"]]
    assert untranslated == []
    assert fuzzy == []
    assert obsolete == []


def test_translations_keep_the_placeholders():
    for entry in _messages():
        for msgstr in entry["plurals"] or [entry["msgstr"]]:
            assert sorted(PLACEHOLDER.findall(entry["msgid"])) == sorted(
                PLACEHOLDER.findall(msgstr)
            ), entry["msgid"]


def test_mo_is_compiled_from_the_current_po():
    with MO.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    catalog = {k: v for k, v in compiled._catalog.items() if k != ""}  # type: ignore[attr-defined]
    expected: dict = {}
    for entry in _messages():
        if entry["plurals"]:
            # gettext keys each plural form by (msgid, form index).
            expected.update({(entry["key"], i): s for i, s in enumerate(entry["plurals"])})
        else:
            expected[entry["key"]] = entry["msgstr"]
    assert catalog == expected, "django.mo is stale: run compilemessages (docs/compatibility.md)"


def _python_msgids() -> set[str]:
    """Catalog keys of the strings marked in the app's Python code."""
    names = {"_", "gettext", "gettext_lazy", "gettext_noop"}
    with_context = {"pgettext", "pgettext_lazy"}
    found = set()
    for path in APP.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            texts = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if node.func.id in names and texts and isinstance(texts[0], str):
                found.add(texts[0])
            elif node.func.id in with_context and len(texts) >= 2:
                found.add(f"{texts[0]}\x04{texts[1]}")
    return found


def _template_msgids() -> set[str]:
    found = set()
    for path in (APP / "templates").rglob("*.html"):
        code = templatize(path.read_text(encoding="utf-8"), origin=str(path))
        # templatize() turns {% translate %} / {% blocktranslate %} into gettext(u'...').
        for literal in re.findall(r"gettext\((u?'(?:[^'\\]|\\.)*')\)", code):
            found.add(ast.literal_eval(literal))
        # {% blocktranslate count %} becomes ngettext(u'singular', u'plural', n).
        for literal in re.findall(r"ngettext\((u?'(?:[^'\\]|\\.)*'),", code):
            found.add(ast.literal_eval(literal))
    return found


def test_every_marked_string_is_in_the_catalog():
    marked = _python_msgids() | _template_msgids()
    assert {"Security dashboard", "Flagged queue", "TRACKING_SEAL_KEYS is empty."} <= marked
    missing = sorted(marked - {e["key"] for e in _messages()})
    assert missing == [], "run makemessages and translate (docs/compatibility.md)"


def test_the_catalog_ships_with_the_package():
    # .ci/smoke_package.py checks the installed wheel and sdist hold it.
    pyproject = (Path(settings.BASE_DIR) / "pyproject.toml").read_text(encoding="utf-8")
    assert '"locale/*/LC_MESSAGES/django.mo"' in pyproject
    assert '"locale/*/LC_MESSAGES/django.po"' in pyproject


# --- the app in Norwegian -----------------------------------------------------------------


@pytest.fixture
def nb_site():
    with override_settings(MIDDLEWARE=LOCALE_MIDDLEWARE, LANGUAGES=LANGUAGES, LANGUAGE_CODE="en"):
        yield


@pytest.mark.django_db
def test_dashboard_renders_in_norwegian(client, staff_user, nb_site):
    make_activity(flagged=True, severity="high", username="kari", type="AUTH")
    client.force_login(staff_user)
    page = client.get(INDEX, HTTP_ACCEPT_LANGUAGE="nb").content.decode()
    assert '<html lang="nb">' in page
    for text in ("Sikkerhetsdashbord", "Flaggkø", "Direktestrøm", "Alvorlighetsgrad", "Bekreft"):
        assert text in page, text
    assert ">Høy<" in page  # the severity label from the model's choices
    assert "Autentisering" in page  # the activity type's label
    for text in ("Security dashboard", "Flagged queue", "Live feed", ">Confirm<"):
        assert text not in page, text
    # The script's own texts arrive as a JSON block in the page's language.
    block = re.search(
        r'<script id="tracking-messages" type="application/json">(.*?)</script>', page
    )
    assert block is not None
    assert '"Confirm": "Bekreft"' in block.group(1)


@pytest.mark.django_db
def test_dashboard_stays_english_by_default(client, staff_user, nb_site):
    make_activity(flagged=True, severity="high")
    client.force_login(staff_user)
    page = client.get(INDEX, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in page
    assert "Security dashboard" in page and "Sikkerhetsdashbord" not in page
    assert 'id="tracking-messages"' not in page


@pytest.mark.django_db
def test_activity_page_renders_in_norwegian(client, staff_user, nb_site):
    activity = make_activity(flagged=True, username="kari", type="PAYMENT")
    client.force_login(staff_user)
    page = client.get(f"{INDEX}activity/{activity.pk}/", HTTP_ACCEPT_LANGUAGE="nb")
    text = page.content.decode()
    assert page.status_code == 200
    assert "Betaling av" in text and "Tidslinje for kari" in text
    assert "Gjennomgangshistorikk" in text and "Ikke gjennomgått ennå." in text


@pytest.mark.django_db
def test_api_errors_in_norwegian(staff_client, nb_site):
    answer = staff_client.get(
        "/api/tracking/activities/", {"page_size": "x"}, HTTP_ACCEPT_LANGUAGE="nb"
    )
    assert answer.status_code == 400
    # The msgid is DRF's too; Django prefers the catalog of the app listed first (DRF's).
    assert "gyldig heltall" in answer.json()["page_size"][0]
    answer = staff_client.get(
        "/api/tracking/activities/export/", {"format": "xls"}, HTTP_ACCEPT_LANGUAGE="nb"
    )
    assert answer.status_code == 400
    assert "er ikke et gyldig valg" in answer.json()["format"][0]


@pytest.mark.django_db
def test_admin_actions_in_norwegian(client, staff_user, nb_site):
    staff_user.is_superuser = True
    staff_user.save()
    activity = make_activity()
    client.force_login(staff_user)
    answer = client.post(
        "/admin/tracking/activity/",
        {"action": "flag", "_selected_action": [str(activity.pk)]},
        HTTP_ACCEPT_LANGUAGE="nb",
        follow=True,
    )
    assert "Flagget 1 aktiviteter." in answer.content.decode()
    assert Activity.objects.get(pk=activity.pk).flagged


def test_system_checks_in_norwegian():
    with override_settings(TRACKING_SEAL_KEYS=[]), translation.override("nb"):
        messages = [m for m in checks.run_checks() if m.id == "tracking.E003"]
    assert [m.msg for m in messages] == ["TRACKING_SEAL_KEYS er tom."]
    assert "segl" in messages[0].hint


@pytest.mark.django_db
def test_outcome_and_blocks_in_norwegian(client, staff_user, nb_site):
    activity = make_activity(flagged=True, username="kari", type="AUTH", outcome="failure")
    client.force_login(staff_user)
    index = client.get(INDEX, HTTP_ACCEPT_LANGUAGE="nb").content.decode()
    assert 'class="outcome outcome-failure">mislykket<' in index
    assert "Aktive blokkeringer" in index and "Varsler og videresending" in index
    block = re.search(
        r'<script id="tracking-messages" type="application/json">(.*?)</script>', index
    )
    assert block is not None and '"failure": "mislykket"' in block.group(1)
    detail = client.get(f"{INDEX}activity/{activity.pk}/", HTTP_ACCEPT_LANGUAGE="nb")
    assert 'class="outcome outcome-failure">mislykket<' in detail.content.decode()


def test_block_and_delivery_checks_in_norwegian():
    with (
        override_settings(TRACKING_NEVER_BLOCK="10.0.0.0/8", TRACKING_DELIVERY="sometimes"),
        translation.override("nb"),
    ):
        messages = {m.id: m.msg for m in checks.run_checks()}
    assert (
        messages["tracking.E130"] == "TRACKING_NEVER_BLOCK må være en liste med CIDR-er, fikk str."
    )
    assert messages["tracking.E172"].startswith('TRACKING_DELIVERY må være "thread"')
