"""Calls flowpbx places: who may be called, at what pace, and through Twilio's REST API."""
