"""Test doubles that implement modelyard's real interfaces, for users' own tests.

Import them from here rather than from the modules that define them: this module is the
supported place, so they can move without breaking anyone.
"""

from __future__ import annotations

from modelyard.deploy.kubernetes.fake import FakeKubeApi

__all__ = ["FakeKubeApi"]
