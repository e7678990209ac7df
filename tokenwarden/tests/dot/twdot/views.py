"""Test-only views: the sign-in page that DOT's pages send a signed-out user to."""

from django.contrib.auth import get_user_model, login
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme


def test_login(request):
    """Signs in the user named in `login`, whatever the password, like
    oidc-provider's devInteractions: the test browser (tests/all/browser.rs) fills
    every `password` field with "any password". An unknown user gets a page
    without a form, where the browser stops. (The password grant, by contrast,
    checks alice's real password: it goes through Django's authenticate().)"""
    next_url = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = "/"
    if request.method == "POST":
        user = get_user_model().objects.filter(
            username=request.POST.get("login", ""), is_active=True
        ).first()
        if user is None:
            return HttpResponse("unknown user\n", status=403, content_type="text/plain")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return HttpResponseRedirect(next_url)
    # An absolute action: the test browser posts to it as it is.
    action = request.build_absolute_uri(request.path)
    return render(request, "twdot/login.html", {"action": action, "next": next_url})
