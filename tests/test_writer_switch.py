"""Processes that run the writer thread shorten the GIL switch interval (never lengthen it)."""

from __future__ import annotations

import sys

import pytest

from tracking.pipeline import writer


@pytest.fixture
def restore_interval():
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_writer_start_shortens_the_switch_interval(settings, restore_interval):
    sys.setswitchinterval(0.005)
    settings.TRACKING_WRITER_SWITCH_INTERVAL = 0.0005
    writer._shorten_switch_interval()
    assert sys.getswitchinterval() == pytest.approx(0.0005)
    settings.TRACKING_WRITER_SWITCH_INTERVAL = 0.002  # never lengthened
    writer._shorten_switch_interval()
    assert sys.getswitchinterval() == pytest.approx(0.0005)


def test_none_leaves_the_interpreter_alone(settings, restore_interval):
    sys.setswitchinterval(0.005)
    settings.TRACKING_WRITER_SWITCH_INTERVAL = None
    writer._shorten_switch_interval()
    assert sys.getswitchinterval() == pytest.approx(0.005)


@pytest.mark.django_db(transaction=True)
def test_starting_the_thread_applies_it(settings, restore_interval):
    sys.setswitchinterval(0.005)
    settings.TRACKING_WRITER_SWITCH_INTERVAL = 0.001
    writer.get_writer().ensure_started()
    assert sys.getswitchinterval() == pytest.approx(0.001)
