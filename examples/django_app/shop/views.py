"""Views that hand work to reactor nodes."""

import os

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

import reactor as JR


@require_GET
def greet(request: HttpRequest) -> JsonResponse:
    """Enqueue a job and answer with its result."""
    handle = JR.enqueue("greet", {"name": request.GET.get("name", "world")})
    args = handle.result(timeout=30)
    return JsonResponse({"greeting": args["greeting"], "job": handle.id, "worker": os.getpid()})


@csrf_exempt
@require_POST
def later(request: HttpRequest) -> JsonResponse:
    """Enqueue a job and answer at once (fire and forget)."""
    handle = JR.enqueue("greet", {"name": request.GET.get("name", "world")})
    return JsonResponse({"job": handle.id, "worker": os.getpid()})
