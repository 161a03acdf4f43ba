"""Twilio's edge: webhook parameters and signatures in, TwiML out. Nothing else speaks Twilio."""
