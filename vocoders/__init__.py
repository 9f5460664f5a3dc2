"""Vocoders: turn features or units back into audio (registry: ``slmtok.registry.VOCODERS``)."""
