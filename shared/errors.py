"""Errors every service may raise and the command line knows how to show."""


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong; the message says, in Spanish and English, what to do."""
