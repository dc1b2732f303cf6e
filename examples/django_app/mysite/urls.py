"""URLs: one view that waits for its job's result, one that enqueues and answers at once."""

from django.urls import path
from shop import views

urlpatterns = [
    path("greet", views.greet),
    path("later", views.later),
]
