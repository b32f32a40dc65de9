"""Tests that need root fail, never skip, when they run without it."""

import os

import pytest


def test_requires_root_fails_clearly_when_not_root(monkeypatch, request):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(pytest.fail.Exception, match="this test needs root"):
        request.getfixturevalue("requires_root")


def test_requires_root_passes_as_root(monkeypatch, request):
    monkeypatch.setattr(os, "geteuid", lambda: 0)

    request.getfixturevalue("requires_root")
