from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "landing.html", {"base_url": f"{settings.PUBLIC_BASE_URL}/v1"})
