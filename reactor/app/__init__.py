"""The application runtime behind the ``reactor`` facade: the reactor thread, fork safety."""
