"""The shop's models: the web app and the jobs (on the nodes) import them alike."""

from django.db import models


class Customer(models.Model):
    name = models.CharField(max_length=100)

    def greeting(self) -> str:
        """What the greet job answers for this customer."""
        return f"Hello, {self.name}!"
