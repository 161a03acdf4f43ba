"""flowpbx: a data-driven IVR and call-queue engine for Twilio Programmable Voice."""

from __future__ import annotations

__version__ = "0.1.0"
