"""The project's own code, imported by the web app and by the job file alike."""


def greeting(name: str) -> str:
    """The text the greet job computes."""
    return f"Hello, {name}!"
