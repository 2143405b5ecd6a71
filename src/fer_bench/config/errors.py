"""The one exception of the config package."""


class ConfigError(ValueError):
    """A configuration problem the user can fix; the message says what and where."""
